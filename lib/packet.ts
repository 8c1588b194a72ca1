// Packets and batches: cheap views over one ring block and its descriptor table.
//
// The native side hands over a whole block (an ArrayBuffer over the ring, no copy) and a
// Uint32Array with one row of metadata per packet; nothing here runs per packet until a packet
// is looked at. Metadata lives in the table, which JavaScript owns, so it stays readable after
// the batch is released; `data` is a view over the ring and is detached (length 0) then.

import { native } from './native'

const {
  TABLE_HEADER_WORDS: HEADER,
  TABLE_FLAG_TIMED_OUT,
  TABLE_FLAG_LOSING,
  ROW_WORDS,
  ROW_DATA_OFFSET,
  ROW_CAPTURED_LEN,
  ROW_ORIGINAL_LEN,
  ROW_SEC,
  ROW_NSEC,
  ROW_STATUS,
  ROW_RXHASH,
  ROW_VLAN_TCI,
  ROW_VLAN_TPID,
  ROW_IFINDEX,
  ROW_PROTOCOL,
  ROW_KIND,
  ROW_ADDR_LO,
  ROW_ADDR_HI,
} = native

/** Where the packet was going, from `sll_pkttype`. */
export type Direction = 'host' | 'broadcast' | 'multicast' | 'otherhost' | 'outgoing'
const DIRECTIONS: Direction[] = ['host', 'broadcast', 'multicast', 'otherhost', 'outgoing']

// TP_STATUS_* bits of tpacket3_hdr.tp_status (linux/if_packet.h).
const TP_STATUS_LOSING = 1 << 2
const TP_STATUS_CSUMNOTREADY = 1 << 3
const TP_STATUS_VLAN_VALID = 1 << 4
const TP_STATUS_VLAN_TPID_VALID = 1 << 6
const TP_STATUS_CSUM_VALID = 1 << 7
const TP_STATUS_GSO_TCP = 1 << 8

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
    raw,
  }
}

/** A packet whose `data` points into the ring; valid while its batch is held. */
export class Packet implements PacketInfo {
  #data: Buffer | undefined
  /** @internal */
  constructor(
    private readonly batch: PacketBatch,
    private readonly base: number,
  ) {}

  /**
   * The captured bytes, a Buffer over the ring (no copy). Once the batch is released this
   * Buffer is detached and has length 0; use `copy()` to keep a packet.
   */
  get data(): Buffer {
    if (this.#data === undefined) {
      this.#data = this.batch.released ? EMPTY : this.batch.bufferAt(this.base)
    }
    return this.#data
  }

  get length(): number {
    return this.batch.table[this.base + ROW_CAPTURED_LEN]
  }

  get originalLength(): number {
    return this.batch.table[this.base + ROW_ORIGINAL_LEN]
  }

  get timestampNs(): bigint {
    const t = this.batch.table
    return BigInt(t[this.base + ROW_SEC]) * 1_000_000_000n + BigInt(t[this.base + ROW_NSEC])
  }

  get timestamp(): { sec: number; nsec: number } {
    const t = this.batch.table
    return { sec: t[this.base + ROW_SEC], nsec: t[this.base + ROW_NSEC] }
  }

  get direction(): Direction {
    return DIRECTIONS[this.batch.table[this.base + ROW_KIND] & 0xff] ?? 'host'
  }

  get protocol(): number {
    return this.batch.table[this.base + ROW_PROTOCOL]
  }

  get ifindex(): number {
    return this.batch.table[this.base + ROW_IFINDEX]
  }

  get sourceLlAddr(): Buffer {
    const t = this.batch.table
    const halen = (t[this.base + ROW_KIND] >>> 8) & 0xff
    const addr = Buffer.allocUnsafe(8)
    addr.writeUInt32LE(t[this.base + ROW_ADDR_LO], 0)
    addr.writeUInt32LE(t[this.base + ROW_ADDR_HI], 4)
    return addr.subarray(0, halen)
  }

  get vlanTci(): number | undefined {
    const t = this.batch.table
    return t[this.base + ROW_STATUS] & TP_STATUS_VLAN_VALID ? t[this.base + ROW_VLAN_TCI] : undefined
  }

  get vlanTpid(): number | undefined {
    const t = this.batch.table
    return t[this.base + ROW_STATUS] & (TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID) ? t[this.base + ROW_VLAN_TPID] : undefined
  }

  get rxhash(): number {
    return this.batch.table[this.base + ROW_RXHASH]
  }

  get status(): PacketStatus {
    const t = this.batch.table
    return decodeStatus(t[this.base + ROW_STATUS], t[this.base + ROW_CAPTURED_LEN], t[this.base + ROW_ORIGINAL_LEN], this.batch.losing)
  }

  /** Whether `data` carries the VLAN tag written back from metadata. */
  get vlanReinserted(): boolean {
    return (this.batch.table[this.base + ROW_KIND] & 0x10000) !== 0
  }

  /** An owned packet: all fields copied, `data` a fresh Buffer. Throws if the batch was released. */
  copy(): OwnedPacket {
    if (this.batch.released) {
      throw new Error('Packet.copy(): the batch was released and its data is gone; copy packets while their batch is held')
    }
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
  /** @internal */
  readonly table: Uint32Array
  #block: ArrayBuffer
  #bytes: Uint8Array | undefined
  #released = false
  #release: (batch: PacketBatch) => void

  /** @internal */
  constructor(raw: { block: ArrayBuffer; table: Uint32Array }, release: (batch: PacketBatch) => void) {
    const t = raw.table
    this.table = t
    this.#block = raw.block
    this.#release = release
    this.length = t[0]
    this.seqNum = (BigInt(t[2]) << 32n) | BigInt(t[1])
    this.timedOut = (t[3] & TABLE_FLAG_TIMED_OUT) !== 0
    this.losing = (t[3] & TABLE_FLAG_LOSING) !== 0
  }

  get released(): boolean {
    return this.#released
  }

  /** The packet at `index`, 0 ≤ index < length. */
  at(index: number): Packet | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) return undefined
    return new Packet(this, HEADER + index * ROW_WORDS)
  }

  *[Symbol.iterator](): Iterator<Packet> {
    for (let i = 0, base = HEADER; i < this.length; i++, base += ROW_WORDS) yield new Packet(this, base)
  }

  /**
   * Fast path without a Packet object per packet: the whole block as one Uint8Array (empty once
   * released), to index with `offsetAt(i)` and `lengthAt(i)`.
   */
  get bytes(): Uint8Array {
    if (this.#released) return EMPTY
    return (this.#bytes ??= new Uint8Array(this.#block))
  }

  /** Offset of packet `index`'s first byte in `bytes`. */
  offsetAt(index: number): number {
    return this.table[HEADER + index * ROW_WORDS + ROW_DATA_OFFSET]
  }

  /** Captured length of packet `index`. */
  lengthAt(index: number): number {
    return this.table[HEADER + index * ROW_WORDS + ROW_CAPTURED_LEN]
  }

  /** @internal */
  bufferAt(base: number): Buffer {
    return Buffer.from(this.#block, this.table[base + ROW_DATA_OFFSET], this.table[base + ROW_CAPTURED_LEN])
  }

  /** Hands the block back to the kernel; every Buffer over it is detached. Idempotent. */
  release(): void {
    if (this.#released) return
    this.#release(this)
  }

  /** @internal Called by the capture once the native side has taken the block back. */
  markReleased(): void {
    this.#released = true
    this.#bytes = undefined
  }

  [Symbol.dispose](): void {
    this.release()
  }
}
