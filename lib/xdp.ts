// XdpSocket: an AF_XDP socket on one queue of one interface, receiving into and sending from a
// UMEM shared with the kernel.
//
// Received packets are Buffers over UMEM frames (no copy), lent one batch at a time, with the
// same contract as Capture's batches: releasing the batch (or taking the next one, or closing)
// detaches every Buffer over it, and only then do its frames go back to the kernel's fill ring.
// Sending copies into free TX frames (`send`) or lends them to write in place (`allocate`).

import type { Writable } from 'node:stream'

import { BatchReader } from './batch-reader'
import { timeoutMs as checkTimeout } from './numbers'
import { callNative, callTakingBack, NetringError } from './errors'
import { TxSlot, TxSlotRun, type SlotOwner } from './injector'
import { native, type Binding } from './native'
import { interfaceName, xdpOptions, type XdpOptions } from './options'

export type { XdpAttachMode, XdpMode, XdpOptions } from './options'
import { ringView } from './ring-view'
import { asBuffer, runCount, slotLength, TxQueue } from './tx-queue'

const { XDP_TABLE_HEADER_WORDS: HEADER, XDP_TABLE_ROW_WORDS: ROW } = native

/** What the kernel gave: zero-copy or copy, attach mode, queue, UMEM geometry, program id. */
export type XdpInfo = Binding.NativeXdpInfo

/** Cumulative counters: netring's (`received`, `sent`, `pending`) and XDP_STATISTICS. */
export type XdpStats = Binding.NativeXdpStats

/** How long a wait lasts before the socket checks that its interface still exists: a deleted
 * interface wakes no epoll waiter. */
const LIVENESS_MS = 250

/** What every received packet, lent or owned, tells about itself. */
export interface XdpPacketInfo {
  readonly data: Buffer
  readonly length: number
  /** The queue it was received on. */
  readonly queue: number
  /** When netring took the batch from the RX ring (copy-mode AF_XDP carries no timestamp). */
  readonly timestampNs: bigint
}

/** A received packet whose `data` is a Buffer over its UMEM frame; readable while its batch is held. */
export class XdpPacket implements XdpPacketInfo {
  #data: Buffer | undefined
  /** @internal */
  constructor(
    private readonly batch: XdpBatch,
    private readonly index: number,
  ) {}

  /** The packet's bytes, over the UMEM (no copy); detached (length 0) once the batch is released. */
  get data(): Buffer {
    this.#data ??= this.batch.released ? Buffer.alloc(0) : this.batch.dataAt(this.index)
    return this.#data
  }

  get length(): number {
    return this.batch.lengthAt(this.index)
  }

  get queue(): number {
    return this.batch.queue
  }

  get timestampNs(): bigint {
    return this.batch.timestampNs
  }

  /** An owned packet: `data` a fresh Buffer. Throws once the batch was released. */
  copy(): OwnedXdpPacket {
    if (this.batch.released) throw releasedError()
    return new OwnedXdpPacket(this)
  }
}

/** A received packet that owns its bytes. */
export class OwnedXdpPacket implements XdpPacketInfo {
  readonly data: Buffer
  readonly length: number
  readonly queue: number
  readonly timestampNs: bigint

  constructor(p: XdpPacketInfo) {
    this.data = Buffer.from(p.data)
    this.length = p.length
    this.queue = p.queue
    this.timestampNs = p.timestampNs
  }
}

/**
 * The packets of one RX batch, over one ArrayBuffer per run of consecutive UMEM frames (one or
 * two), each covering only this batch's frames. Release it as soon as you can: its frames return
 * to the kernel only then, and the socket holds one batch at a time.
 */
export class XdpBatch implements Iterable<XdpPacket>, Disposable {
  readonly length: number
  readonly queue: number
  /** The runs' bytes; index them with `runAt(i)`, `offsetAt(i)`, `lengthAt(i)`. Empty once released. */
  readonly runs: readonly Uint8Array[]
  readonly #buffers: readonly ArrayBuffer[]
  readonly #table: Uint32Array
  readonly #release: (batch: XdpBatch) => void
  #released = false

  /** @internal `raw`: the binding's `[table, ...runs]`. */
  constructor(raw: [Uint32Array, ...ArrayBuffer[]], queue: number, release: (batch: XdpBatch) => void) {
    const t = raw[0]
    this.#table = t
    // slice and map define the new arrays' elements (no index assignment: an Array.prototype
    // setter would run user code in the middle of taking a batch).
    const buffers = raw.slice(1) as ArrayBuffer[]
    this.#buffers = buffers
    this.runs = buffers.map((r) => new Uint8Array(r))
    this.length = t[0]
    this.queue = queue
    this.#release = release
  }

  /** When netring took the batch from the RX ring, in ns since the epoch (made on first read: a BigInt costs). */
  get timestampNs(): bigint {
    return BigInt(this.#table[2]) * 1_000_000_000n + BigInt(this.#table[3])
  }

  get released(): boolean {
    return this.#released
  }

  at(index: number): XdpPacket | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) return undefined
    return this.packet(index)
  }

  [Symbol.iterator](): IterableIterator<XdpPacket> {
    let i = 0
    const iterator: IterableIterator<XdpPacket> = {
      next: () =>
        i < this.length && !this.#released ? { value: this.packet(i++), done: false } : { value: undefined, done: true },
      [Symbol.iterator]: () => iterator,
    }
    return iterator
  }

  /** The packet at `index`, unchecked (0 ≤ index < length). */
  packet(index: number): XdpPacket {
    return new XdpPacket(this, index)
  }

  /** Which of `runs` packet `index` lies in. */
  runAt(index: number): number {
    return this.#table[HEADER + index * ROW]
  }

  /** Offset of packet `index`'s first byte in its run. */
  offsetAt(index: number): number {
    return this.#table[HEADER + index * ROW + 1]
  }

  lengthAt(index: number): number {
    return this.#table[HEADER + index * ROW + 2]
  }

  /** A Buffer over packet `index` (no copy); empty once the batch is released. */
  dataAt(index: number): Buffer {
    if (this.#released) return Buffer.alloc(0)
    const row = HEADER + index * ROW
    return ringView(this.#buffers[this.#table[row]], this.#table[row + 1], this.#table[row + 2])
  }

  /** Hands the frames back to the kernel; every Buffer over them is detached. Idempotent. */
  release(): void {
    if (!this.#released) this.#release(this)
  }

  /** @internal */
  markReleased(): void {
    this.#released = true
  }

  [Symbol.dispose](): void {
    this.release()
  }
}

export class XdpSocket extends BatchReader<XdpBatch, XdpPacket> implements SlotOwner, Disposable, AsyncDisposable {
  readonly #native: Binding.NativeXdpSocket
  readonly interface: string
  readonly queue: number
  #batch: XdpBatch | null = null
  /** `sendAsync` and `writable()`: waiting for room, settling, errors nobody owns. */
  readonly #tx: TxQueue
  /** Frames queued so far: `sendAsync` frames are numbered by it. */
  #queuedCount = 0
  protected override readonly recheckMs = LIVENESS_MS

  private constructor(iface: string, nativeSocket: Binding.NativeXdpSocket) {
    super()
    this.interface = iface
    this.#native = nativeSocket
    this.queue = nativeSocket.info().queue
    const n = nativeSocket
    this.#tx = new TxQueue(
      n,
      {
        offloadOf: noOffload,
        enqueue: (frame) => (n.send(frame) ? this.#queuedCount++ : -1),
        check: (frame) => n.check(frame),
        // A frame in the TX ring is settled: AF_XDP refuses nothing after it was queued, and
        // no frame is withdrawn.
        settledBefore: () => this.#queuedCount,
        takeRejection: () => null,
        withdraw: () => false,
      },
      this,
    )
  }

  /**
   * Opens an AF_XDP socket on `iface`, queue `options.queue` (0). Unless `program` says
   * otherwise, netring's XDP program is attached to the interface with a BPF link (shared by the
   * process's sockets on that interface, detached with the last one, and by the kernel if the
   * process dies); packets of queues without a socket go on to the kernel stack.
   */
  static open(iface: string, options?: XdpOptions): XdpSocket {
    interfaceName(iface)
    const nativeOptions = xdpOptions(options)
    return new XdpSocket(iface, callNative(() => native.NativeXdpSocket.open(iface, nativeOptions)))
  }

  get fd(): number {
    return callNative(() => this.#native.fd)
  }

  get closed(): boolean {
    return callNative(() => this.#native.closed)
  }

  get info(): XdpInfo {
    return callNative(() => this.#native.info())
  }

  /** Counts; after close() the final ones (frames left in the TX ring by then are withdrawn). */
  stats(): XdpStats {
    return this.#tx.withQueued(callNative(() => this.#native.stats()))
  }

  // ---- RX ----

  protected nativeNext(): XdpBatch | null {
    return this.#adopt(callTakingBack(() => this.#native.nextBatch(), this, this.closedItself))
  }

  protected nativeNextBlocking(timeoutMs: number | undefined): XdpBatch | null {
    return this.#adopt(callTakingBack(() => this.#native.nextBatchBlocking(timeoutMs), this, this.closedItself))
  }

  #adopt(raw: [Uint32Array, ...ArrayBuffer[]] | null): XdpBatch | null {
    if (!raw) return null
    this.#batch = new XdpBatch(raw, this.queue, (batch) => {
      if (batch === this.#batch) {
        // Released natively first: a refused release (the socket busy) leaves the batch held.
        callTakingBack(() => this.#native.release(), this, this.closedItself)
        this.forgetBatch()
      }
    })
    return this.#batch
  }

  protected forgetBatch(): void {
    this.#batch?.markReleased()
    this.#batch = null
  }

  protected releaseHeld(): void {
    this.#batch?.release()
  }

  protected waitNative(): Promise<number> {
    return callTakingBack(() => this.#native.waitReadable(), this, this.closedItself)
  }

  protected cancelNative(): void {
    this.#native.cancelWait()
  }

  protected own(packet: XdpPacket): OwnedXdpPacket {
    return new OwnedXdpPacket(packet)
  }

  // ---- TX ----

  /** Copies `frame` into a free TX frame and queues it; `false` when none is free (flush, or `sendAsync`). */
  send(frame: Uint8Array): boolean {
    this.#tx.throwKept()
    return callNative(() => this.#native.send(asBuffer(frame)))
  }

  /**
   * Queues frames in order until no TX frame is free; returns how many were queued. Every frame
   * is checked first: if one is refused the call throws and nothing is queued (a retry cannot
   * send a frame twice).
   */
  sendFrames(frames: readonly Uint8Array[], options?: { offload?: undefined }): number {
    this.#tx.throwKept()
    noOffload(options)
    if (!Array.isArray(frames)) throw NetringError.invalidOption('frames', 'must be an array of Buffers')
    // The binding reads and checks each element itself (frames[i] is a Buffer or a Uint8Array).
    return callNative(() => this.#native.sendFrames(frames))
  }

  /** Lends a TX frame of `length` bytes to write in place (zero-copy); `null` when none is free. */
  allocate(length: number): TxSlot | null {
    this.#tx.throwKept()
    slotLength(length)
    const lent = callNative(() => this.#native.allocate(length))
    return lent && new TxSlot(this, lent.index, lent.data)
  }

  /** Lends up to `count` consecutive TX frames of `length` bytes as one buffer; `null` when none is free. */
  allocateRun(count: number, length: number): TxSlotRun | null {
    this.#tx.throwKept()
    runCount(count)
    slotLength(length)
    const run = callNative(() => this.#native.allocateRun(count, length))
    return run && new TxSlotRun(this, run, length)
  }

  /** @internal */
  _commit(index: number, length: number): void {
    callTakingBack(() => this.#native.commit(index, length), this, this.closedItself)
  }

  /** @internal */
  _discard(index: number): void {
    callTakingBack(() => this.#native.discard(index), this, this.closedItself)
  }

  /** @internal */
  _commitRun(first: number, count: number, lengths: number[]): void {
    callTakingBack(() => this.#native.commitRun(first, count, lengths), this, this.closedItself)
  }

  /** @internal Gives back a collected slot: background work, so an error is reported, never thrown. */
  _giveBack(giveBack: () => void): void {
    this.#tx.giveBack(giveBack)
  }

  /** Hands everything queued to the kernel, kicking it only when it asks (always in copy mode); returns how many frames. */
  flush(): number {
    this.#tx.throwKept()
    return this.#tx.flush()
  }

  /** Flushes and blocks until everything was sent or `timeoutMs` passed (no limit when omitted
   * or Infinity); whether it all was. */
  drain(timeoutMs?: number): boolean {
    return this.#tx.drain(timeoutMs)
  }

  /** Flushes and resolves once everything queued was sent, without blocking the event loop. */
  drained(): Promise<void> {
    return this.#tx.drained()
  }

  /**
   * Queues `frame`, waiting for a free TX frame if needed, and flushes soon after; frames go out
   * in call order. Resolves once the frame is in the TX ring and the kernel was kicked (AF_XDP
   * refuses no frame later: a frame that does not fit is refused when queued).
   */
  sendAsync(frame: Uint8Array): Promise<void> {
    return this.#tx.sendAsync(frame, undefined)
  }

  /** A Writable (object mode) of frames or packets (`{ data }`), with backpressure; drains on end. */
  writable(options?: { highWaterMark?: number; offload?: false }): Writable {
    return this.#tx.writable(options)
  }

  // ---- lifetime ----

  /**
   * Flushes what was queued (waiting up to `drainTimeoutMs`, 1000 by default; Infinity: no
   * limit), detaches every lent Buffer, unmaps the rings, closes the socket and emits `'close'`;
   * the XDP program goes with the process's last socket on the interface. A `sendAsync` frame
   * not queued by then rejects with EBADF. Idempotent.
   */
  close(drainTimeoutMs = 1000): void {
    checkTimeout(drainTimeoutMs, 'drainTimeoutMs')
    if (this.closeFinished) return
    try {
      if (!this.closed && this.info.txFrames > 0) this.#tx.drain(drainTimeoutMs, 'drainTimeoutMs')
    } catch {
      // The interface may be gone; closing must still happen.
    } finally {
      callNative(() => this.#native.close())
      this.finishClose()
    }
  }

  protected override abandonWaiting(): void {
    this.#tx.abandon(NetringError.of('EBADF', 'the socket was closed before this frame was sent', { syscall: 'sendto' }))
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.closed) return
    if (this.info.txFrames > 0) {
      await Promise.race([this.drained().catch(() => undefined), new Promise((r) => setTimeout(r, 1000))])
    }
    this.close(0)
  }
}

// The 0.x names, kept as the very same functions.
export interface XdpSocket {
  /** @deprecated The old name of `sendFrames`. */
  sendBatch: XdpSocket['sendFrames']
  /** @deprecated The old name of `allocateRun`. */
  allocateBatch: XdpSocket['allocateRun']
}
XdpSocket.prototype.sendBatch = XdpSocket.prototype.sendFrames
XdpSocket.prototype.allocateBatch = XdpSocket.prototype.allocateRun

/** AF_XDP frames carry no offload metadata (there is no virtio-net header to give it to). */
function noOffload(options: unknown): undefined {
  if (options === undefined) return undefined
  if (typeof options !== 'object' || options === null) throw NetringError.invalidOption('options', 'must be an object')
  if ((options as { offload?: unknown }).offload !== undefined) {
    throw NetringError.invalidOption('offload', 'an XdpSocket sends no offload metadata (AF_XDP has no virtio-net header); use an Injector with { offload: true }')
  }
  return undefined
}

function releasedError(): NetringError {
  return NetringError.of('EBADF', "this packet's batch was released: its frame went back to the kernel. copy() packets while their batch is held")
}
