// Packets and batches: cheap views over one ring block.
//
// The native side hands over a whole block (an ArrayBuffer over the ring, no copy) and a
// Uint32Array with the offset of each packet's `tpacket3_hdr` in it; every field of a packet is
// read from that header, in the block, when asked for. Nothing runs per packet until a packet is
// looked at, and everything a packet shows lives in the ring: once the batch is released its
// Buffers are detached (length 0) and its packets can no longer be read (copy() what you keep).

import { NetringError } from './errors'
import { native } from './native'
import { decodeOffload, OFFLOAD_HDR_LEN, type PacketOffload } from './offload'
import { ringView } from './ring-view'

const {
  TABLE_HEADER_WORDS: HEADER,
  TABLE_FLAG_TIMED_OUT,
  TABLE_FLAG_LOSING,
  TABLE_FLAG_OFFLOAD,
  HDR_SEC,
  HDR_NSEC,
  HDR_SNAPLEN,
  HDR_LEN,
  HDR_STATUS,
  HDR_MAC,
  HDR_RXHASH,
  HDR_VLAN_TCI,
  HDR_VLAN_TPID,
  HDR_NETRING_FLAGS,
  FLAG_VLAN_REINSERTED,
  HDR_SLL_PROTOCOL,
  HDR_SLL_IFINDEX,
  HDR_SLL_PKTTYPE,
  HDR_SLL_HALEN,
  HDR_SLL_ADDR,
  TP_STATUS_LOSING,
  TP_STATUS_CSUMNOTREADY,
  TP_STATUS_VLAN_VALID,
  TP_STATUS_VLAN_TPID_VALID,
  TP_STATUS_CSUM_VALID,
  TP_STATUS_GSO_TCP,
  TP_STATUS_TS_SOFTWARE,
  TP_STATUS_TS_RAW_HARDWARE,
} = native

// Header fields are 4-byte aligned (headers are 16-aligned), so 32-bit fields are read through
// a Uint32Array and 16-bit ones from the low half of their word (the ring is in host order, and
// netring runs on little-endian hosts only: see native.ts).
const W_SEC = HDR_SEC >> 2
const W_NSEC = HDR_NSEC >> 2
const W_SNAPLEN = HDR_SNAPLEN >> 2
const W_LEN = HDR_LEN >> 2
const W_STATUS = HDR_STATUS >> 2
const W_MAC = HDR_MAC >> 2
const W_RXHASH = HDR_RXHASH >> 2
const W_VLAN_TCI = HDR_VLAN_TCI >> 2
const W_VLAN_TPID = HDR_VLAN_TPID >> 2
const W_IFINDEX = HDR_SLL_IFINDEX >> 2
const FLAGS_SHIFT = (HDR_NETRING_FLAGS - HDR_VLAN_TPID) * 8

/** Where the packet was going, from `sll_pkttype`. */
/** The directions, indexed by `sll_pkttype` (PACKET_HOST = 0 ... PACKET_OUTGOING = 4). */
export const DIRECTIONS = ['host', 'broadcast', 'multicast', 'otherhost', 'outgoing'] as const
export type Direction = (typeof DIRECTIONS)[number]


/** Per-packet status, decoded from `tp_status`. */
export interface PacketStatus {
  /** Fewer bytes were captured than were on the wire (snapLen or frame size). */
  truncated: boolean
  /**
   * The ring dropped packets (since `stats()` was last called) before this packet's block was
   * handed over. TPACKET_V3 reports this per block: see `PacketBatch.losing`.
   */
  losing: boolean
  /** The kernel stripped a VLAN tag into `vlanTci` (TP_STATUS_VLAN_VALID). */
  vlanValid: boolean
  /** The kernel's checksum check passed (TP_STATUS_CSUM_VALID). */
  csumValid: boolean
  /** The checksum is left to hardware and not yet computed, typical for outgoing packets. */
  csumNotReady: boolean
  /** A GSO TCP packet (TP_STATUS_GSO_TCP). */
  gsoTcp: boolean
  /**
   * Where the timestamp comes from: the NIC (`timestampSource: 'hardware'` on a NIC that stamps),
   * the kernel's receive stamp (asked for hardware, the NIC gave none, the kernel took one), or
   * the moment the packet was written to the ring (the default, and the last fallback).
   */
  timestampSource: 'hardware' | 'software' | 'ring'
  /** The raw `tp_status` bits. */
  raw: number
}

/** What every packet, lent or owned, tells about itself. */
export interface PacketInfo {
  readonly data: Buffer
  /** Captured bytes (`data.length` while the packet's batch is held). */
  readonly length: number
  /** Bytes on the wire. */
  readonly originalLength: number
  readonly timestampNs: bigint
  readonly timestamp: { sec: number; nsec: number }
  readonly direction: Direction
  /** Ethertype from `sockaddr_ll` (host byte order). */
  readonly protocol: number
  readonly ifindex: number
  readonly sourceLlAddr: Buffer
  readonly vlanTci: number | undefined
  readonly vlanTpid: number | undefined
  /** The kernel's flow hash, 0 unless `fillRxhash` was set (or the driver provides it). */
  readonly rxhash: number
  readonly status: PacketStatus
  /** Offload metadata, on a capture with `offloadInfo` (undefined otherwise). */
  readonly offload?: PacketOffload
}

const EMPTY = Buffer.alloc(0)

function decodeStatus(raw: number, captured: number, original: number, blockLosing: boolean): PacketStatus {
  return {
    truncated: captured < original,
    losing: blockLosing || (raw & TP_STATUS_LOSING) !== 0,
    vlanValid: (raw & TP_STATUS_VLAN_VALID) !== 0,
    csumValid: (raw & TP_STATUS_CSUM_VALID) !== 0,
    csumNotReady: (raw & TP_STATUS_CSUMNOTREADY) !== 0,
    gsoTcp: (raw & TP_STATUS_GSO_TCP) !== 0,
    timestampSource: raw & TP_STATUS_TS_RAW_HARDWARE ? 'hardware' : raw & TP_STATUS_TS_SOFTWARE ? 'software' : 'ring',
    raw,
  }
}

/** A packet whose `data` points into the ring; readable while its batch is held. */
export class Packet implements PacketInfo {
  #data: Buffer | undefined
  /** @internal */
  constructor(
    private readonly batch: PacketBatch,
    /** Offset of the packet's header in the block. */
    private readonly h: number,
  ) {}

  /**
   * The captured bytes, a Buffer over the ring (no copy). Once the batch is released this
   * Buffer is detached and has length 0; use `copy()` to keep a packet.
   */
  get data(): Buffer {
    if (this.#data === undefined) {
      this.#data = this.batch.released ? EMPTY : this.batch.bufferAt(this.h)
    }
    return this.#data
  }

  get length(): number {
    return this.batch.word(this.h, W_SNAPLEN)
  }

  get originalLength(): number {
    return this.batch.word(this.h, W_LEN)
  }

  get timestampNs(): bigint {
    return BigInt(this.batch.word(this.h, W_SEC)) * 1_000_000_000n + BigInt(this.batch.word(this.h, W_NSEC))
  }

  get timestamp(): { sec: number; nsec: number } {
    return { sec: this.batch.word(this.h, W_SEC), nsec: this.batch.word(this.h, W_NSEC) }
  }

  get direction(): Direction {
    // The kernel delivers only these five to packet sockets (PACKET_LOOPBACK, _USER and
    // _KERNEL stay inside it).
    return DIRECTIONS[this.batch.byte(this.h + HDR_SLL_PKTTYPE)] ?? 'host'
  }

  get protocol(): number {
    const at = this.h + HDR_SLL_PROTOCOL
    return (this.batch.byte(at) << 8) | this.batch.byte(at + 1)
  }

  get ifindex(): number {
    return this.batch.word(this.h, W_IFINDEX)
  }

  get sourceLlAddr(): Buffer {
    const halen = Math.min(8, this.batch.byte(this.h + HDR_SLL_HALEN))
    return Buffer.from(this.batch.bytes.subarray(this.h + HDR_SLL_ADDR, this.h + HDR_SLL_ADDR + halen))
  }

  get vlanTci(): number | undefined {
    return this.batch.word(this.h, W_STATUS) & TP_STATUS_VLAN_VALID ? this.batch.word(this.h, W_VLAN_TCI) & 0xffff : undefined
  }

  get vlanTpid(): number | undefined {
    const status = this.batch.word(this.h, W_STATUS)
    if (status & TP_STATUS_VLAN_TPID_VALID) return this.batch.word(this.h, W_VLAN_TPID) & 0xffff
    // Kernels that do not report the TPID only strip 802.1Q tags.
    return status & TP_STATUS_VLAN_VALID ? 0x8100 : undefined
  }

  get rxhash(): number {
    return this.batch.word(this.h, W_RXHASH)
  }

  get status(): PacketStatus {
    return decodeStatus(this.batch.word(this.h, W_STATUS), this.length, this.originalLength, this.batch.losing)
  }

  get offload(): PacketOffload | undefined {
    return this.batch.offloadAt(this.h)
  }

  /** @internal The raw offload header in the ring, for forwarding without decoding it. */
  offloadHeader(): Buffer | undefined {
    return this.batch.offloadHeaderAt(this.h)
  }

  /** Whether `data` carries the VLAN tag written back from metadata. */
  get vlanReinserted(): boolean {
    return ((this.batch.word(this.h, W_VLAN_TPID) >>> FLAGS_SHIFT) & FLAG_VLAN_REINSERTED) !== 0
  }

  /** An owned packet: all fields copied, `data` a fresh Buffer. Throws once the batch was released. */
  copy(): OwnedPacket {
    return new OwnedPacket(this)
  }
}

/** A packet that owns its bytes; safe to keep for as long as you like. */
export class OwnedPacket implements PacketInfo {
  readonly data: Buffer
  readonly length: number
  readonly originalLength: number
  readonly timestampNs: bigint
  readonly timestamp: { sec: number; nsec: number }
  readonly direction: Direction
  readonly protocol: number
  readonly ifindex: number
  readonly sourceLlAddr: Buffer
  readonly vlanTci: number | undefined
  readonly vlanTpid: number | undefined
  readonly rxhash: number
  readonly status: PacketStatus
  readonly offload?: PacketOffload

  constructor(p: PacketInfo) {
    this.data = Buffer.from(p.data)
    this.length = p.length
    this.originalLength = p.originalLength
    this.timestampNs = p.timestampNs
    this.timestamp = p.timestamp
    this.direction = p.direction
    this.protocol = p.protocol
    this.ifindex = p.ifindex
    this.sourceLlAddr = Buffer.from(p.sourceLlAddr)
    this.vlanTci = p.vlanTci
    this.vlanTpid = p.vlanTpid
    this.rxhash = p.rxhash
    this.status = p.status
    if (p.offload) this.offload = p.offload
  }
}

/**
 * One retired ring block: the packets the kernel wrote into it. Hold it as briefly as you can:
 * the kernel cannot reuse the block until it is released, and the capture holds one batch at a
 * time (asking for the next one releases this one).
 */
export class PacketBatch implements Iterable<Packet>, Disposable {
  /** Number of packets. */
  readonly length: number
  /** The kernel's block sequence number; a gap means blocks were skipped. */
  readonly seqNum: bigint
  /** The block was handed over by the retire timeout before it was full. */
  readonly timedOut: boolean
  /** The ring dropped packets (since `stats()` was last called) before this block was closed. */
  readonly losing: boolean
  readonly #table: Uint32Array
  readonly #block: ArrayBuffer
  readonly #words: Uint32Array
  readonly #bytes: Uint8Array
  #released = false
  /** A copy (`copy()`): memory of its own, not the ring's. */
  #owned = false
  readonly #offload: boolean
  readonly #release: (batch: PacketBatch) => void
  /** The interface of the capture that lent the block, for errors. */
  readonly #interface: string | undefined

  /** @internal */
  constructor(raw: { block: ArrayBuffer; table: Uint32Array }, release: (batch: PacketBatch) => void, iface?: string) {
    const t = raw.table
    this.#interface = iface
    this.#table = t
    this.#block = raw.block
    this.#words = new Uint32Array(raw.block)
    this.#bytes = new Uint8Array(raw.block)
    this.#release = release
    this.length = t[0]
    this.seqNum = (BigInt(t[2]) << 32n) | BigInt(t[1])
    this.timedOut = (t[3] & TABLE_FLAG_TIMED_OUT) !== 0
    this.losing = (t[3] & TABLE_FLAG_LOSING) !== 0
    this.#offload = (t[3] & TABLE_FLAG_OFFLOAD) !== 0
  }

  get released(): boolean {
    return this.#released
  }

  /** The packet at `index`, 0 ≤ index < length. */
  at(index: number): Packet | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) return undefined
    return this.packet(index)
  }

  /** The packets in order; iteration stops if the batch is released meanwhile. */
  [Symbol.iterator](): IterableIterator<Packet> {
    // Hand-written rather than a generator: a generator step costs more than the packet.
    let i = 0
    const iterator: IterableIterator<Packet> = {
      next: () =>
        i < this.length && !this.#released ? { value: this.packet(i++), done: false } : { value: undefined, done: true },
      [Symbol.iterator]: () => iterator,
    }
    return iterator
  }

  /** @internal The packet at `index`, unchecked: for `at()` and the iterators. */
  packet(index: number): Packet {
    return new Packet(this, this.#table[HEADER + index])
  }

  /**
   * Fast path without a Packet object per packet: the whole block as one Uint8Array (empty once
   * released), to index with `offsetAt(i)` and `lengthAt(i)`.
   */
  get bytes(): Uint8Array {
    return this.#bytes
  }

  /** @internal The table of header offsets, for the native file writer. */
  get table(): Uint32Array {
    if (this.#released) throw releasedError()
    return this.#table
  }

  /** Offset of packet `index`'s first byte in `bytes`. */
  offsetAt(index: number): number {
    const h = this.#table[HEADER + index]
    return h + (this.#words[(h >> 2) + W_MAC] & 0xffff)
  }

  /** Captured length of packet `index`. */
  lengthAt(index: number): number {
    return this.#words[(this.#table[HEADER + index] >> 2) + W_SNAPLEN]
  }

  /** @internal A 32-bit header field of the packet whose header is at `h`. */
  word(h: number, w: number): number {
    if (this.#released || this.#bytes.length === 0) throw this.#unreadable()
    return this.#words[(h >> 2) + w]
  }

  /** @internal The offload metadata of the packet whose header is at `h`, if the capture has it. */
  offloadAt(h: number): PacketOffload | undefined {
    if (!this.#offload) return undefined
    return decodeOffload(this.#bytes, h + (this.word(h, W_MAC) & 0xffff))
  }

  /** @internal The raw offload header of the packet whose header is at `h` (a view into the ring), if any. */
  offloadHeaderAt(h: number): Buffer | undefined {
    if (!this.#offload || this.#released) return undefined
    return ringView(this.#block, h + (this.#words[(h >> 2) + W_MAC] & 0xffff) - OFFLOAD_HDR_LEN, OFFLOAD_HDR_LEN)
  }

  /** @internal */
  byte(at: number): number {
    if (this.#released || this.#bytes.length === 0) throw this.#unreadable()
    return this.#bytes[at]
  }

  /** @internal */
  bufferAt(h: number): Buffer {
    const w = h >> 2
    const start = h + (this.#words[w + W_MAC] & 0xffff)
    const length = this.#words[w + W_SNAPLEN]
    // The header lies in memory JavaScript can write: bounds read from it are checked here, so a
    // header written over is a typed error (a NaN from a corrupt table fails the test too).
    if (!(start + length <= this.#bytes.length)) throw this.#bytes.length === 0 ? this.#unreadable() : corruptHeader(h)
    return ringView(this.#block, start, length)
  }

  /**
   * An owned copy of the batch: its packets copied once, with their headers, into memory of
   * its own (one copy per block, not per packet). Readable for as long as you keep it, with the
   * same API; its `release()` only marks it released. For streams and file writers.
   */
  copy(): PacketBatch {
    if (this.#released || (this.#bytes.length === 0 && this.length > 0)) throw this.#unreadable()
    const last = this.length - 1
    // Packets lie in order in the block: the last one ends the used part. Word-aligned, as the
    // header reads need.
    const end = last < 0 ? 4 : this.offsetAt(last) + this.lengthAt(last)
    if (!(end <= this.#bytes.length)) throw corruptHeader(this.#table[HEADER + last])
    const length = Math.min(this.#bytes.length, (end + 3) & ~3)
    // Memory that is not zero-filled first (every byte is written next) and not from Node's
    // shared pool (the ArrayBuffer is the copy's alone): `ArrayBuffer.prototype.slice` zero-fills,
    // which made the copy a third slower, and the copy is most of an owned-batch stream's time.
    const copied = Buffer.allocUnsafeSlow(length)
    copied.set(this.#bytes.subarray(0, length))
    const block = copied.buffer as ArrayBuffer
    const owned = new PacketBatch({ block, table: this.#table.slice() }, (copy) => copy.markReleased())
    owned.#owned = true
    return owned
  }

  /** @internal Whether the batch lends ring memory (false for a `copy()`). */
  get lent(): boolean {
    return !this.#owned
  }

  /**
   * Why the batch's packets cannot be read: it was released, or (still held) its memory was
   * detached by someone else, moved away with `transfer()`; the capture closes at its next call.
   */
  #unreadable(): NetringError {
    if (this.#released) return releasedError()
    return NetringError.of(
      'EPERM',
      "this batch's memory was moved away (ArrayBuffer.prototype.transfer): ring memory cannot leave its capture, which closes at its next call",
      { interface: this.#interface, hint: 'copy packets you want to keep (packet.copy(), Buffer.from(packet.data))' },
    )
  }

  /** Hands the block back to the kernel; every Buffer over it is detached. Idempotent. */
  release(): void {
    if (this.#released) return
    this.#release(this)
  }

  /** @internal Called by the capture once the native side has taken the block back. */
  markReleased(): void {
    this.#released = true
  }

  [Symbol.dispose](): void {
    this.release()
  }
}

function corruptHeader(h: number): NetringError {
  return NetringError.of('EIO', `the packet header at offset ${h} of the batch describes bytes outside its block: the batch's memory was written over`, {
    hint: "treat batch and packet Buffers as read-only; copy() a packet before changing its bytes",
  })
}

function releasedError(): NetringError {
  return NetringError.of(
    'EBADF',
    "this packet's batch was released: its memory went back to the kernel. Read packets while their batch is held, and copy() those you keep",
  )
}
