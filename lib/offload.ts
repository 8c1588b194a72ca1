// Offload metadata: the kernel's virtio-net header (PACKET_VNET_HDR) that says whether a frame
// is one GSO super-frame to be cut into segments, and whether its transport checksum is still to
// be filled in. A capture with `offloadInfo` shows it as `packet.offload`; an injector with
// `offload` takes the same object back. The engine checks it against the frame
// (crates/engine/src/afpacket/offload.rs); here it is only decoded.

import { native } from './native'

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

export { OFFLOAD_HDR_LEN }
