// Injector: an AF_PACKET TPACKET_V3 transmit ring on one interface.
//
// Frames are queued into ring slots (`send` copies, `allocate` lends a slot to write in place)
// and leave when `flush()` kicks the kernel, one sendto() for everything queued. `sendAsync`
// and `writable()` wait for room without blocking the event loop and flush for you.
//
// The contract: every frame handed over either leaves, or is reported to whoever handed it over
// (the call throws before anything is queued, or its promise rejects), and is counted in
// `stats()`. Background work never throws: an error with an owner (a `sendAsync` promise, a
// write callback) goes to that owner; one with no owner goes to `'error'` if someone listens,
// and is otherwise kept and thrown by the next call.

import { EventEmitter } from 'node:events'
import type { Writable } from 'node:stream'

import { callNative, callTakingBack, NetringError } from './errors'
import { native, type Binding } from './native'
import { timeoutMs as checkTimeout } from './numbers'
import { checkOffload, encodeOffloads, type PacketOffload } from './offload'
import { injectorOptions, interfaceName, type InjectorOptions } from './options'
import { ringView } from './ring-view'
import { asBuffer, runCount, slotLength, TxQueue } from './tx-queue'

export interface InjectorStats {
  /** Frames the kernel took from the ring and did not reject. */
  sent: number
  /** Frames the kernel refused at flush (longer than the MTU by then); each is reported once. */
  rejected: number
  /** Frames that will never leave, their sender told: a `sendAsync` frame whose promise rejected
   * (say, ENETDOWN), a frame still queued at `close()`. */
  withdrawn: number
  /** Frames queued and not yet sent, or still in flight, and `sendAsync` frames waiting for room. */
  pending: number
}

export type InjectorInfo = Binding.NativeInjectorInfo

/** Per-frame send options (needs an injector opened with `{ offload: true }`). */
export interface SendOptions {
  /** The frame's offload metadata, as `packet.offload` shows it; omitted fields are 0 / false. */
  offload?: Partial<PacketOffload>
}

/** Offload metadata for several frames or slots: one object for all, or one entry per frame
 * (null or undefined: that frame has none). */
export type OffloadList = Partial<PacketOffload> | readonly (Partial<PacketOffload> | null | undefined)[]

/** Options of `sendFrames()` and `TxSlotRun.send()` (offload needs an injector opened with `{ offload: true }`). */
export interface SendListOptions {
  /** The frames' offload metadata: one object for all, or one per frame sent. */
  offload?: OffloadList
}

interface InjectorEvents {
  error: [error: Error]
  close: []
}

/** A count or length the binding takes as a u32. */
const isU32 = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff_ffff

// A slot dropped without send() or discard() would hold back every frame allocated after it
// (the kernel sends in ring order), so a collected slot or run of slots is given back.
const abandoned = new FinalizationRegistry<() => void>((giveBack) => giveBack())

/** What lent slots need from their sender (an `Injector`, an `XdpSocket`). */
export interface SlotOwner {
  readonly closed: boolean
  /** @internal */ _commit(index: number, length: number): void
  /** @internal */ _discard(index: number): void
  /** @internal */ _commitRun(first: number, count: number, lengths: number[]): void
  /** @internal Gives back a collected slot: background work, so an error is reported, never thrown. */
  _giveBack(giveBack: () => void): void
  /** @internal Absent where frames carry no offload metadata (an XdpSocket). */
  _setSlotOffload?(index: number, offload: Binding.NativeOffload): void
  /** @internal Like `_commitRun`, with raw offload headers (one for all, or one per slot sent). */
  _commitRunOffload?(first: number, count: number, lengths: number[], headers: Buffer, perSlot: boolean): void
}

/**
 * A transmit slot lent by `Injector.allocate()`: `data` is a Buffer over the ring frame itself.
 * Write the frame into it, then `send()` (or `discard()`); either detaches `data`. Frames leave
 * in the order their slots were allocated, so a slot held open holds back the frames after it.
 */
export class TxSlot implements Disposable {
  readonly data: Buffer
  #injector: SlotOwner
  #index: number
  #done = false

  /** @internal */
  constructor(injector: SlotOwner, index: number, data: ArrayBuffer) {
    this.#injector = injector
    this.#index = index
    this.data = ringView(data, 0, data.byteLength)
    abandoned.register(this, () => injector._giveBack(() => injector._discard(index)), this)
  }

  get length(): number {
    return this.data.length
  }

  /**
   * Queues the frame (its first `length` bytes, all of them by default), with its offload
   * metadata on an injector opened with `offload`. A bad length or offload throws (EINVAL, or
   * EMSGSIZE for the interface) and the slot goes back unsent.
   */
  send(length: number = this.data.length, options?: SendOptions): void {
    try {
      const offload = sendOffload(options)
      if (offload) {
        if (!this.#injector._setSlotOffload) throw NetringError.invalidOption('offload', 'this socket sends no offload metadata')
        this.#injector._setSlotOffload(this.#index, offload)
      }
    } catch (e) {
      // As when the frame itself is refused: the slot goes back to the ring.
      this.discard()
      throw e
    }
    this.#settle()
    if (!isU32(length)) {
      this.#injector._discard(this.#index)
      throw NetringError.invalidOption('length', `must be a non-negative integer, got ${String(length)}`)
    }
    this.#injector._commit(this.#index, length)
  }

  /** Gives the slot back unsent. */
  discard(): void {
    this.#settle()
    this.#injector._discard(this.#index)
  }

  /** Discards the slot if it was neither sent nor discarded. */
  [Symbol.dispose](): void {
    if (!this.#done && !this.#injector.closed) this.discard()
  }

  #settle(): void {
    if (this.#done) throw NetringError.of('EINVAL', 'this slot was already sent or discarded')
    this.#done = true
    abandoned.unregister(this)
  }
}

/**
 * A run of consecutive transmit slots lent as one buffer by `allocateRun()`: write frame `i`
 * into `slot(i)`, then `send()` the first n of them (all by default); the rest go back to the
 * ring. One lend and one detach for the whole run is what makes it cheap per frame. Write only
 * inside the `slot(i)` views: the buffer behind them also spans the later frames' headers, which
 * the engine rewrites in full before the kernel may read them (what is written there is lost).
 */
export class TxSlotRun implements Disposable {
  /** How many slots were lent (may be fewer than asked for). */
  readonly count: number
  /** Bytes per slot. */
  readonly length: number
  #injector: SlotOwner
  #first: number
  #stride: number
  #data: ArrayBuffer
  #done = false

  /** @internal */
  constructor(injector: SlotOwner, run: { first: number; count: number; stride: number; data: ArrayBuffer }, length: number) {
    this.#injector = injector
    this.#first = run.first
    this.#stride = run.stride
    this.#data = run.data
    this.count = run.count
    this.length = length
    const first = run.first
    abandoned.register(this, () => injector._giveBack(() => injector._commitRun(first, 0, [length])), this)
  }

  /** Slot `i` (0 ≤ i < count): a Buffer of `length` bytes over the ring frame; empty once sent. */
  slot(i: number): Buffer {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) {
      throw NetringError.invalidOption('index', `must be an integer from 0 to ${this.count - 1}, got ${String(i)}`)
    }
    // Detached (byteLength 0) once sent, discarded, or given back by the injector's close().
    if (this.#done || this.#data.byteLength === 0) return Buffer.alloc(0)
    return ringView(this.#data, i * this.#stride, this.length)
  }

  /**
   * Queues the first `count` slots (all by default) and gives back the rest. `lengths`: bytes to
   * send from each slot, one number for all (the slot length by default) or one per slot.
   * `options.offload` (an injector opened with `offload`): one metadata object for every slot
   * sent, or one per slot sent. All of it is checked first: on a bad argument nothing is queued,
   * every slot goes back, and the call throws (a field of slot i's metadata is named
   * `offload[i].field`).
   */
  send(count: number = this.count, lengths: number | readonly number[] = this.length, options?: SendListOptions): void {
    if (this.#done) throw NetringError.of('EINVAL', 'this run of slots was already sent or discarded')
    this.#done = true
    abandoned.unregister(this)
    let list: number[]
    let headers: Buffer | undefined
    let perSlot = false
    try {
      if (!isU32(count)) throw NetringError.invalidOption('count', `must be an integer from 0 to ${this.count}, got ${String(count)}`)
      // Array.from reads holes of a sparse array as undefined, which the check below refuses.
      const given = typeof lengths === 'number' ? [lengths] : Array.isArray(lengths) ? Array.from(lengths) : null
      if (!given) throw NetringError.invalidOption('lengths', `must be a number or an array of numbers, got ${String(lengths)}`)
      const bad = given.findIndex((l) => !isU32(l))
      if (bad >= 0) throw NetringError.invalidOption('lengths', `lengths[${bad}] must be a non-negative integer, got ${String(given[bad])}`)
      list = given
      const offload = optionsOffload(options)
      if (offload !== undefined && count > 0) {
        if (!this.#injector._commitRunOffload) throw NetringError.invalidOption('offload', 'this socket sends no offload metadata')
        headers = encodeOffloads(offload, count)
        perSlot = Array.isArray(offload)
      }
    } catch (e) {
      // Refused before anything is queued: every slot goes back.
      this.#injector._commitRun(this.#first, 0, [this.length])
      throw e
    }
    if (headers) this.#injector._commitRunOffload!(this.#first, count, list, headers, perSlot)
    else this.#injector._commitRun(this.#first, count, list)
  }

  /** Gives every slot back unsent. */
  discard(): void {
    this.send(0)
  }

  /** Discards the slots if they were neither sent nor discarded. */
  [Symbol.dispose](): void {
    if (!this.#done && !this.#injector.closed) this.discard()
  }
}

/** @deprecated The old name of `TxSlotRun` ("batch" now means only an RX block). */
export const TxSlotBatch = TxSlotRun
/** @deprecated The old name of `TxSlotRun`. */
export type TxSlotBatch = TxSlotRun

export class Injector extends EventEmitter<InjectorEvents> implements Disposable, AsyncDisposable {
  readonly #native: Binding.NativeInjector
  readonly interface: string
  /** `sendAsync` and `writable()`: waiting for room, settling, errors nobody owns. */
  readonly #tx: TxQueue
  /** close() is under way: a close() from a listener it runs (an 'error' while draining) waits for it. */
  #closing = false
  /** 'close' was emitted: by close(), or when the socket closed itself. */
  #closeEmitted = false
  /** Finishes a close the socket did itself (see callTakingBack). */
  readonly #closedItself = () => this.#closed()

  private constructor(iface: string, nativeInjector: Binding.NativeInjector) {
    super()
    this.interface = iface
    this.#native = nativeInjector
    const n = nativeInjector
    this.#tx = new TxQueue(
      n,
      {
        offloadOf: sendOffload,
        enqueue: (frame, offload) => (offload ? n.sendOffload(frame, offload) : n.send(frame)),
        check: (frame, offload) => n.check(frame, offload ?? null),
        settledBefore: () => n.settledBefore(),
        takeRejection: () => n.takeRejection(),
        withdraw: (seq) => n.withdraw(seq),
      },
      this,
    )
  }

  /** Opens an injector on `iface`. It only sends: its socket receives nothing. */
  static open(iface: string, options?: InjectorOptions): Injector {
    interfaceName(iface)
    const nativeOptions = injectorOptions(options)
    return new Injector(iface, callNative(() => native.NativeInjector.open(iface, nativeOptions)))
  }

  get fd(): number {
    return callNative(() => this.#native.fd)
  }

  get closed(): boolean {
    return callNative(() => this.#native.closed)
  }

  /** Ring shape, slot capacity and the largest frame the interface takes now. */
  get info(): InjectorInfo {
    return callNative(() => this.#native.info())
  }

  stats(): InjectorStats {
    return this.#tx.withQueued(callNative(() => this.#native.stats()))
  }

  /**
   * Copies `frame` into the next free slot and queues it; `false` when the ring is full (flush,
   * or use `sendAsync`). A frame larger than the slot or the interface MTU + 18 is EMSGSIZE.
   */
  send(frame: Uint8Array, options?: SendOptions): boolean {
    this.#tx.throwKept()
    const buffer = asBuffer(frame)
    const offload = sendOffload(options)
    if (offload) return callNative(() => this.#native.sendOffload(buffer, offload)) >= 0
    return callNative(() => this.#native.send(buffer)) >= 0
  }

  /**
   * @internal Forwards a captured frame with its raw offload header; `modified`: redo its
   * checksums. False when it must wait for room (a frame larger than a slot waits until
   * everything queued before it has left).
   */
  _forward(frame: Buffer, header: Buffer | undefined, modified: boolean): boolean {
    this.#tx.throwKept()
    return callNative(() => this.#native.forward(frame, header ?? null, modified)) >= 0
  }

  /** @internal */
  _setSlotOffload(index: number, offload: Binding.NativeOffload): void {
    callNative(() => this.#native.setSlotOffload(index, offload))
  }

  /**
   * Queues frames in order until the ring is full; returns how many were queued. Every frame is
   * checked first: if one is refused the call throws and nothing is queued (a retry cannot send
   * a frame twice). `options.offload` (an injector opened with `offload`): one metadata object
   * for every frame, or one per frame; a frame larger than a slot leaves through the second
   * socket once everything before it has, and the call returns there while some is queued.
   */
  sendFrames(frames: readonly Uint8Array[], options?: SendListOptions): number {
    this.#tx.throwKept()
    if (!Array.isArray(frames)) throw NetringError.invalidOption('frames', 'must be an array of Buffers')
    const offload = optionsOffload(options)
    // The binding reads and checks each element itself (frames[i] is a Buffer or a Uint8Array;
    // a hole reads as undefined and is refused).
    if (offload === undefined) return callNative(() => this.#native.sendFrames(frames))
    // Metadata is encoded for as many frames as the list says it holds (the binding refuses the
    // same lengths, but reads the list only after this).
    const count: unknown = frames.length
    if (!Number.isInteger(count) || (count as number) < 0 || (count as number) > native.MAX_FRAMES) {
      throw NetringError.invalidOption('frames', `must be an array of at most ${native.MAX_FRAMES} frames`)
    }
    if (count === 0) return callNative(() => this.#native.sendFrames(frames))
    const headers = encodeOffloads(offload, count as number)
    return callNative(() => this.#native.sendFramesOffload(frames, headers, Array.isArray(offload)))
  }

  /** Lends a slot of `length` bytes to write a frame into, without a copy; `null` when full. */
  allocate(length: number): TxSlot | null {
    this.#tx.throwKept()
    slotLength(length)
    const lent = callNative(() => this.#native.allocate(length))
    return lent && new TxSlot(this, lent.index, lent.data)
  }

  /**
   * Lends up to `count` consecutive slots of `length` bytes as one buffer (zero-copy, cheap per
   * frame); fewer at the end of the ring or where frames are still in flight; `null` when full.
   */
  allocateRun(count: number, length: number): TxSlotRun | null {
    this.#tx.throwKept()
    runCount(count)
    slotLength(length)
    const run = callNative(() => this.#native.allocateRun(count, length))
    return run && new TxSlotRun(this, run, length)
  }

  /** @internal */
  _commitRun(first: number, count: number, lengths: number[]): void {
    callTakingBack(() => this.#native.commitRun(first, count, lengths), this, this.#closedItself)
  }

  /** @internal */
  _commitRunOffload(first: number, count: number, lengths: number[], headers: Buffer, perSlot: boolean): void {
    callTakingBack(() => this.#native.commitRunOffload(first, count, lengths, headers, perSlot), this, this.#closedItself)
  }

  /** @internal */
  _commit(index: number, length: number): void {
    callTakingBack(() => this.#native.commit(index, length), this, this.#closedItself)
  }

  /** @internal */
  _discard(index: number): void {
    callTakingBack(() => this.#native.discard(index), this, this.#closedItself)
  }

  /** @internal Gives back a collected slot: background work, so an error is reported, never thrown. */
  _giveBack(giveBack: () => void): void {
    this.#tx.giveBack(giveBack)
  }

  /**
   * Sends everything queued with one kick; returns how many frames the kernel took (the rest
   * met backpressure and stay queued). A frame the kernel refuses is counted in `stats()` and
   * reported: to its `sendAsync` promise, else as `'error'` if someone listens, else thrown by
   * the next call.
   */
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
   * Queues `frame`, waiting for room if the ring is full, and flushes soon after (frames queued
   * in the same tick leave with one kick). Resolves once the kernel has taken the frame;
   * rejects if it refused it (EMSGSIZE) or the send failed (ENETDOWN, ENXIO, EBADF): a frame
   * whose promise rejected never leaves later. Frames go out in call order, those with offload
   * metadata too (a frame larger than a slot waits until everything before it has left).
   */
  sendAsync(frame: Uint8Array, options?: SendOptions): Promise<void> {
    return this.#tx.sendAsync(frame, options)
  }

  /**
   * A Writable (object mode) of frames: Buffers, Uint8Arrays, or packets (`{ data }`, as
   * `Capture.stream()` yields). It waits for ring room (backpressure) and flushes and drains on
   * end, so `pipeline(capture.stream(), transform, injector.writable())` loses nothing; a frame
   * that fails fails the stream.
   */
  writable(options?: { highWaterMark?: number; offload?: boolean }): Writable {
    return this.#tx.writable(options)
  }

  /**
   * Gives back slots still lent (their buffers are detached, nothing of them is sent), flushes
   * what was queued, waits up to `drainTimeoutMs` (1000 by default) for it to be sent and closes
   * the socket; emits `'close'`. A `sendAsync` frame not sent by
   * then rejects with EBADF. Idempotent.
   */
  close(drainTimeoutMs = 1000): void {
    checkTimeout(drainTimeoutMs, 'drainTimeoutMs')
    if (this.#closeEmitted || this.#closing) return
    this.#closing = true
    try {
      if (!this.closed) {
        // Slots still lent are abandoned now: given back, they no longer hold queued frames.
        callNative(() => this.#native.giveBackLent())
        this.#tx.drain(drainTimeoutMs, 'drainTimeoutMs')
      }
    } finally {
      callNative(() => this.#native.close())
      this.#closed()
    }
  }

  /** What close() does after the native close, once: waiting frames told, 'close' emitted. */
  #closed(): void {
    if (this.#closeEmitted) return
    this.#closeEmitted = true
    this.#tx.abandon(NetringError.of('EBADF', 'the injector was closed before this frame was sent', { syscall: 'sendto' }))
    this.emit('close')
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.closed) return
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([this.drained(), new Promise((r) => (timer = setTimeout(r, 1000)))])
    } finally {
      clearTimeout(timer)
      this.close(0)
    }
  }
}

// The 0.x names, kept as the very same functions.
export interface Injector {
  /** @deprecated The old name of `sendFrames`. */
  sendBatch: Injector['sendFrames']
  /** @deprecated The old name of `allocateRun`. */
  allocateBatch: Injector['allocateRun']
}
Injector.prototype.sendBatch = Injector.prototype.sendFrames
Injector.prototype.allocateBatch = Injector.prototype.allocateRun

/** The `offload` of send options, type-checked (the engine checks the values against the frame). */
function sendOffload(options: unknown): Binding.NativeOffload | undefined {
  const offload = optionsOffload(options)
  return offload === undefined ? undefined : checkOffload(offload)
}

/** The `offload` field of an options object (`{ offload }`), unchecked. */
function optionsOffload(options: unknown): unknown {
  if (options === undefined) return undefined
  if (typeof options !== 'object' || options === null) throw NetringError.invalidOption('options', 'must be an object { offload }')
  return (options as { offload?: unknown }).offload
}
