// Offload metadata: the kernel's virtio-net header (PACKET_VNET_HDR) that says whether a frame
// is one GSO super-frame to be cut into segments, and whether its transport checksum is still to
// be filled in. A capture with `offloadInfo` shows it as `packet.offload`; an injector with
// `offload` takes the same object back. The engine checks it against the frame
// (crates/engine/src/afpacket/offload.rs); here it is only decoded.

import { NetringError } from './errors'
import { describe, integer } from './numbers'
import { native, type Binding } from './native'

const { OFFLOAD_HDR_LEN, OFFLOAD_F_NEEDS_CSUM, OFFLOAD_F_DATA_VALID, OFFLOAD_GSO_ECN } = native
const GSO_TYPES = native.gsoTypeNames() as GsoType[]

/** The segmentation a frame asks for: none, or the protocol its segments are cut as. */
export type GsoType = 'none' | 'tcpv4' | 'tcpv6' | 'udp' | 'udp-l4'

/** A frame's offload metadata, field for field the kernel's `virtio_net_hdr`. */
export interface PacketOffload {
  /** `'none'`, or the protocol of a GSO super-frame (up to 64 KiB, larger than the MTU). */
  gsoType: GsoType
  /** Payload bytes per segment (the TCP MSS for TSO); 0 without a gsoType. */
  gsoSize: number
  /** Bytes of headers (Ethernet to transport) every segment repeats. */
  hdrLen: number
  /** With `needsCsum`: where the checksummed bytes start, from the frame's first byte. */
  csumStart: number
  /** With `needsCsum`: where the checksum goes, from `csumStart`. */
  csumOffset: number
  /** The transport checksum is not filled in yet (the sender left it to the hardware). */
  needsCsum: boolean
  /** The kernel already verified the checksum (VIRTIO_NET_HDR_F_DATA_VALID). */
  csumValid: boolean
}

/** Reads the header that ends at `end` in `bytes`. */
export function decodeOffload(bytes: Uint8Array, end: number): PacketOffload {
  const at = end - OFFLOAD_HDR_LEN
  const u16 = (i: number) => bytes[at + i] | (bytes[at + i + 1] << 8)
  const flags = bytes[at]
  return {
    gsoType: GSO_TYPES[bytes[at + 1] & ~OFFLOAD_GSO_ECN] || 'none',
    gsoSize: u16(4),
    hdrLen: u16(2),
    csumStart: u16(6),
    csumOffset: u16(8),
    needsCsum: (flags & OFFLOAD_F_NEEDS_CSUM) !== 0,
    csumValid: (flags & OFFLOAD_F_DATA_VALID) !== 0,
  }
}

const OFFLOAD_FIELDS: Record<keyof PacketOffload, 'string' | 'number' | 'boolean'> = {
  gsoType: 'string',
  gsoSize: 'number',
  hdrLen: 'number',
  csumStart: 'number',
  csumOffset: 'number',
  needsCsum: 'boolean',
  csumValid: 'boolean',
}

/**
 * Offload metadata a caller gives (`{ offload }` of send options), type-checked, each field's
 * error naming `option.field`; omitted fields are 0 / false. The engine checks the values
 * against the frame they go with.
 */
export function checkOffload(value: unknown, option = 'offload'): Binding.NativeOffload {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw NetringError.invalidOption(option, `must be an object like packet.offload, got ${describe(value)}`)
  }
  // A plain copy of what was checked, each field read once: a getter, or a change made while a
  // frame waits for room, cannot hand the binding a value the check never saw.
  const copy: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) {
    const type = OFFLOAD_FIELDS[key as keyof PacketOffload]
    if (!type) throw NetringError.invalidOption(`${option}.${key}`, `unknown field (known: ${Object.keys(OFFLOAD_FIELDS).join(', ')})`)
    if (v === undefined) continue
    // Numbers go to the binding as u32s; the engine checks their range against the frame.
    if (type === 'number') integer(v, `${option}.${key}`)
    else if (typeof v !== type) throw NetringError.invalidOption(`${option}.${key}`, `must be a ${type}, got ${describe(v)}`)
    copy[key] = v
  }
  return copy as Binding.NativeOffload
}

/**
 * The raw headers for the offload metadata of `count` frames or slots: one object for all of
 * them (one header), or an array with one entry per frame (null or undefined: none), each
 * refused naming its index (`offload[2].gsoSize`).
 */
export function encodeOffloads(offload: unknown, count: number): Buffer {
  if (!Array.isArray(offload)) return encodeOffload(checkOffload(offload), 'offload', Buffer.alloc(OFFLOAD_HDR_LEN), 0)
  if (offload.length !== count) {
    throw NetringError.invalidOption('offload', `needs one entry per frame (${count}) or one object for all, got ${offload.length}`)
  }
  const out = Buffer.alloc(OFFLOAD_HDR_LEN * count)
  // Array.from reads holes of a sparse array as undefined: no metadata for that frame.
  Array.from(offload as unknown[]).forEach((o, i) => {
    if (o !== undefined && o !== null) encodeOffload(checkOffload(o, `offload[${i}]`), `offload[${i}]`, out, i * OFFLOAD_HDR_LEN)
  })
  return out
}

/** Writes one header at `at` (the inverse of `decodeOffload`). */
function encodeOffload(o: Binding.NativeOffload, option: string, out: Buffer, at: number): Buffer {
  const u16 = (field: keyof PacketOffload, i: number) => out.writeUInt16LE(integer(o[field] ?? 0, `${option}.${field}`, 0, 0xffff), at + i)
  const name = o.gsoType ?? 'none'
  const gsoType = name === '' ? -1 : GSO_TYPES.indexOf(name as GsoType)
  if (gsoType < 0) {
    throw NetringError.invalidOption(`${option}.gsoType`, `must be one of ${GSO_TYPES.filter(Boolean).join(', ')}; got ${describe(name)}`)
  }
  out[at] = (o.needsCsum ? OFFLOAD_F_NEEDS_CSUM : 0) | (o.csumValid ? OFFLOAD_F_DATA_VALID : 0)
  out[at + 1] = gsoType
  u16('hdrLen', 2)
  u16('gsoSize', 4)
  u16('csumStart', 6)
  u16('csumOffset', 8)
  return out
}

export { OFFLOAD_HDR_LEN }
