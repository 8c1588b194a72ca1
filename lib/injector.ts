// Injector: an AF_PACKET TPACKET_V3 transmit ring on one interface.
//
// Frames are queued into ring slots (`send` copies, `allocate` lends a slot to write in place)
// and leave when `flush()` kicks the kernel, one sendto() for everything queued. `sendAsync`
// and `writable()` wait for room without blocking the event loop and flush for you.

import { EventEmitter } from 'node:events'
import { Writable } from 'node:stream'

import { callNative, NetringError } from './errors'
import { native, type Binding } from './native'
import { timeoutMs as checkTimeout } from './numbers'
import { injectorOptions, interfaceName, type InjectorOptions } from './options'
import { ringView } from './ring-view'

export interface InjectorStats {
  /** Frames the kernel took from the ring and did not reject. */
  sent: number
  /** Frames the kernel rejected (TP_STATUS_WRONG_FORMAT); each is also an `'error'` event. */
  rejected: number
  /** Frames queued and not yet sent, or still in flight. */
  pending: number
}

export type InjectorInfo = Binding.NativeInjectorInfo

interface InjectorEvents {
  error: [error: Error]
  close: []
}

/** How long to wait for POLLOUT before kicking again: frames that met backpressure (ENOBUFS)
 * need a new kick, and the kernel does not announce when that would succeed. */
const RETRY_MS = 2

// A slot dropped without send() or discard() would hold back every frame allocated after it
// (the kernel sends in ring order), so a collected slot or run of slots is given back.
const abandoned = new FinalizationRegistry<() => void>((giveBack) => giveBack())

/**
 * A transmit slot lent by `Injector.allocate()`: `data` is a Buffer over the ring frame itself.
 * Write the frame into it, then `send()` (or `discard()`); either detaches `data`. Frames leave
 * in the order their slots were allocated, so a slot held open holds back the frames after it.
 */
export class TxSlot implements Disposable {
  readonly data: Buffer
  #injector: Injector
  #index: number
  #done = false

  /** @internal */
  constructor(injector: Injector, index: number, data: ArrayBuffer) {
    this.#injector = injector
    this.#index = index
    this.data = ringView(data, 0, data.byteLength)
    abandoned.register(this, () => injector.closed || injector._discard(index), this)
  }

  get length(): number {
    return this.data.length
  }

  /** Queues the frame (its first `length` bytes, all of them by default). */
  send(length: number = this.data.length): void {
    this.#settle()
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
 * Consecutive transmit slots lent as one buffer by `Injector.allocateBatch()`: write frame `i`
 * into `slot(i)`, then `send()` the first n of them (all by default); the rest go back to the
 * ring. One lend and one detach for the whole batch is what makes it cheap per frame. Write only
 * inside the `slot(i)` views: the buffer behind them also spans the later frames' headers, which
 * the engine rewrites in full before the kernel may read them (what is written there is lost).
 */
export class TxSlotBatch implements Disposable {
  /** How many slots were lent (may be fewer than asked for). */
  readonly count: number
  /** Bytes per slot. */
  readonly length: number
  #injector: Injector
  #first: number
  #stride: number
  #data: ArrayBuffer
  #done = false

  /** @internal */
  constructor(injector: Injector, run: { first: number; count: number; stride: number; data: ArrayBuffer }, length: number) {
    this.#injector = injector
    this.#first = run.first
    this.#stride = run.stride
    this.#data = run.data
    this.count = run.count
    this.length = length
    const first = run.first
    abandoned.register(this, () => injector.closed || injector._commitRun(first, 0, [length]), this)
  }

  /** Slot `i` (0 ≤ i < count): a Buffer of `length` bytes over the ring frame; empty once sent. */
  slot(i: number): Buffer {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) {
      throw NetringError.invalidOption('index', `must be an integer from 0 to ${this.count - 1}, got ${String(i)}`)
    }
    if (this.#done) return Buffer.alloc(0)
    return ringView(this.#data, i * this.#stride, this.length)
  }

  /**
   * Queues the first `count` slots (all by default) and gives back the rest. `lengths`: bytes to
   * send from each slot, one number for all (the slot length by default) or one per slot.
   */
  send(count: number = this.count, lengths: number | readonly number[] = this.length): void {
    if (this.#done) throw NetringError.of('EINVAL', 'this batch of slots was already sent or discarded')
    this.#done = true
    abandoned.unregister(this)
    this.#injector._commitRun(this.#first, count, typeof lengths === 'number' ? [lengths] : [...lengths])
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

export class Injector extends EventEmitter<InjectorEvents> implements Disposable, AsyncDisposable {
  readonly #native: Binding.NativeInjector
  readonly interface: string
  #flushScheduled = false

  private constructor(iface: string, nativeInjector: Binding.NativeInjector) {
    super()
    this.interface = iface
    this.#native = nativeInjector
  }

  /** Opens an injector on `iface`. It only sends: its socket receives nothing. */
  static open(iface: string, options?: InjectorOptions): Injector {
    interfaceName(iface)
    const nativeOptions = injectorOptions(options)
    return new Injector(iface, callNative(() => native.NativeInjector.open(iface, nativeOptions)))
  }

  get fd(): number {
    return this.#native.fd
  }

  get closed(): boolean {
    return this.#native.closed
  }

  /** Ring shape, slot capacity and the largest frame the interface takes now. */
  get info(): InjectorInfo {
    return callNative(() => this.#native.info())
  }

  stats(): InjectorStats {
    return callNative(() => this.#native.stats())
  }

  /**
   * Copies `frame` into the next free slot and queues it; `false` when the ring is full (flush,
   * or use `sendAsync`). A frame larger than the slot or the interface MTU + 18 is EMSGSIZE.
   */
  send(frame: Uint8Array): boolean {
    return callNative(() => this.#native.send(asBuffer(frame)))
  }

  /** Queues frames in order until the ring is full; returns how many were queued. */
  sendBatch(frames: readonly Uint8Array[]): number {
    if (!Array.isArray(frames)) throw NetringError.invalidOption('frames', 'must be an array of Buffers')
    return callNative(() => this.#native.sendFrames(frames.map(asBuffer)))
  }

  /** Lends a slot of `length` bytes to write a frame into, without a copy; `null` when full. */
  allocate(length: number): TxSlot | null {
    if (!Number.isInteger(length) || length < 0) {
      throw NetringError.invalidOption('length', `must be a non-negative integer, got ${String(length)}`)
    }
    const lent = callNative(() => this.#native.allocate(length))
    return lent && new TxSlot(this, lent.index, lent.data)
  }

  /**
   * Lends up to `count` consecutive slots of `length` bytes as one buffer (zero-copy, cheap per
   * frame); fewer at the end of the ring or where frames are still in flight; `null` when full.
   */
  allocateBatch(count: number, length: number): TxSlotBatch | null {
    for (const [name, value] of [['count', count], ['length', length]] as const) {
      if (!Number.isInteger(value) || value < 0) throw NetringError.invalidOption(name, `must be a non-negative integer, got ${String(value)}`)
    }
    const run = callNative(() => this.#native.allocateRun(count, length))
    return run && new TxSlotBatch(this, run, length)
  }

  /** @internal */
  _commitRun(first: number, count: number, lengths: number[]): void {
    callNative(() => this.#native.commitRun(first, count, lengths))
  }

  /** @internal */
  _commit(index: number, length: number): void {
    callNative(() => this.#native.commit(index, length))
  }

  /** @internal */
  _discard(index: number): void {
    callNative(() => this.#native.discard(index))
  }

  /**
   * Sends everything queued with one kick; returns how many frames the kernel took (the rest
   * met backpressure and stay queued). A frame the kernel rejects is counted in `stats()` and
   * emitted as `'error'`.
   */
  flush(): number {
    const taken = callNative(() => this.#native.flush())
    const rejection = this.#native.takeRejection()
    if (rejection) this.emit('error', NetringError.fromNative(rejection) as Error)
    return taken
  }

  /** Flushes and blocks until everything was sent or `timeoutMs` passed; whether it all was. */
  drain(timeoutMs?: number): boolean {
    const limit = checkTimeout(timeoutMs)
    this.flush()
    return callNative(() => this.#native.drain(limit))
  }

  /** Flushes and resolves once everything queued was sent, without blocking the event loop. */
  async drained(): Promise<void> {
    for (;;) {
      this.flush()
      if (this.stats().pending === 0) return
      await this.#room()
    }
  }

  /**
   * Queues `frame`, waiting for room if the ring is full, and flushes soon after (frames
   * queued in the same tick leave with one kick).
   */
  async sendAsync(frame: Uint8Array): Promise<void> {
    const buffer = asBuffer(frame)
    while (!callNative(() => this.#native.send(buffer))) {
      this.flush()
      await this.#room()
    }
    this.#scheduleFlush()
  }

  /**
   * A Writable (object mode) of frames: Buffers, Uint8Arrays, or packets (`{ data }`, as
   * `Capture.stream()` yields). It waits for ring room (backpressure) and flushes and drains on
   * end, so `pipeline(capture.stream(), transform, injector.writable())` loses nothing.
   */
  writable(options?: { highWaterMark?: number }): Writable {
    const frameOf = (chunk: unknown): Buffer => {
      if (chunk instanceof Uint8Array) return asBuffer(chunk)
      const data = (chunk as { data?: unknown } | null)?.data
      if (data instanceof Uint8Array) return asBuffer(data)
      throw NetringError.invalidOption('chunk', 'must be a Buffer, a Uint8Array or a packet with data')
    }
    return new Writable({
      objectMode: true,
      highWaterMark: options?.highWaterMark ?? 256,
      write: (chunk, _encoding, callback) => {
        this.sendAsync(frameOf(chunk)).then(() => callback(), callback)
      },
      writev: (chunks, callback) => {
        void (async () => {
          const frames = chunks.map((c) => frameOf(c.chunk))
          for (let i = 0; i < frames.length; ) {
            const queued = callNative(() => this.#native.sendFrames(frames.slice(i)))
            i += queued
            if (i < frames.length) {
              this.flush()
              await this.#room()
            }
          }
          this.#scheduleFlush()
        })().then(() => callback(), callback)
      },
      final: (callback) => {
        this.drained().then(() => callback(), callback)
      },
    })
  }

  /**
   * Flushes what was queued, waits up to `drainTimeoutMs` (1000 by default) for it to be sent,
   * detaches lent slots and closes the socket; emits `'close'`. Idempotent.
   */
  close(drainTimeoutMs = 1000): void {
    checkTimeout(drainTimeoutMs, 'drainTimeoutMs')
    if (this.closed) return
    try {
      this.drain(drainTimeoutMs)
    } finally {
      callNative(() => this.#native.close())
      this.emit('close')
    }
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.closed) return
    await Promise.race([this.drained(), new Promise((r) => setTimeout(r, 1000))])
    this.close(0)
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    queueMicrotask(() => {
      this.#flushScheduled = false
      if (!this.closed) this.flush()
    })
  }

  /** Resolves when the ring may have room: POLLOUT from the reactor, or a short retry timer. */
  async #room(): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const retry = new Promise<void>((resolve) => (timer = setTimeout(resolve, RETRY_MS)))
    const writable = callNative(() => this.#native.waitWritable())
    try {
      await Promise.race([writable, retry])
    } finally {
      clearTimeout(timer)
      if (!this.closed) this.#native.cancelWait()
    }
  }
}

function asBuffer(frame: unknown): Buffer {
  if (Buffer.isBuffer(frame)) return frame
  if (frame instanceof Uint8Array) return Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength)
  throw NetringError.invalidOption('frame', 'must be a Buffer or a Uint8Array')
}
