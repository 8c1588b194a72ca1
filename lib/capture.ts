// Capture: an AF_PACKET TPACKET_V3 receive ring on one interface.
//
// One reading mechanism, many shapes: `nextBatch()` (and its blocking twin) is the only way
// batches come out of the ring. `batches()` turns it into an async iterator by waiting for
// readiness on the engine's reactor thread; `for await`, the EventEmitter and `stream()` are
// adapters over `batches()`, and `packets()` is the synchronous one.

import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'

import { abortError, callNative, NetringError } from './errors'
import { native, type Binding } from './native'
import { timeoutMs as checkTimeout } from './numbers'
import { captureOptions, filterOption, interfaceName, iterationOptions, type CaptureOptions, type Profile } from './options'
import { AsyncPacketIterator, type BatchSource, PacketIterator } from './packet-iterators'
import { OwnedPacket, type Packet, PacketBatch } from './packet'

/** How long a blocking wait with an interrupt check runs between two checks. */
const INTERRUPT_SLICE_MS = 100
export interface CaptureStats {
  /** Packets that reached the ring since the capture was opened (the kernel's count minus drops). */
  packets: number
  /** Packets dropped because the ring was full. */
  drops: number
  /** Times the ring was full and the kernel froze the queue. */
  freezeCount: number
}

/** What was opened, with the ring geometry the kernel accepted. */
export type CaptureInfo = Omit<Binding.NativeCaptureInfo, 'profile'> & { profile: Profile }

export interface PacketsOptions {
  /** Stop after this many packets. */
  limit?: number
  /** Stop once this many milliseconds have passed in all (not per packet). */
  timeoutMs?: number
}

export interface IterateOptions {
  /** Stop after this many packets. */
  limit?: number
  /** Ends the iteration with an AbortError. */
  signal?: AbortSignal
}

export interface BatchesOptions {
  /** Ends the iteration with an AbortError. */
  signal?: AbortSignal
}

export interface StreamOptions {
  /** Destroys the stream with an AbortError. */
  signal?: AbortSignal
  /** Owned packets (or batches) buffered ahead of the consumer. @default 1024 (16 with `batches`) */
  highWaterMark?: number
  /**
   * Push owned batches (`batch.copy()`: one copy per block) instead of owned packets: a
   * pipeline then pays per block, not per packet. @default false
   */
  batches?: boolean
}

interface CaptureEvents {
  packet: [packet: Packet]
  batch: [batch: PacketBatch]
  error: [error: Error]
  close: []
}

/** A consumer holding a capture's reader slot, by the name errors show. */
interface Reader {
  name: string
}

export class Capture extends EventEmitter<CaptureEvents> implements Disposable, AsyncDisposable {
  readonly #native: Binding.NativeCapture
  readonly interface: string
  #batch: PacketBatch | null = null
  #wait: Promise<number> | null = null
  #paused = false
  #emitting = false
  #emitAbort: AbortController | null = null
  /** The consumer reading the capture now (one at a time), or null. */
  #reader: Reader | null = null
  /** The reader slot held by the 'packet'/'batch' listeners while there are any. */
  #listenersReader: Reader | null = null
  /** Wakes the delivery loop that pause() stopped (resume() or close() calls it). */
  #wakeDelivery: (() => void) | null = null

  private constructor(iface: string, nativeCapture: Binding.NativeCapture) {
    super()
    this.interface = iface
    this.#native = nativeCapture
    // A listener for packets or batches starts delivery. The first one claims the reader slot,
    // so on() throws EBUSY while another consumer reads (the listener is then not added).
    ;(this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event !== 'packet' && event !== 'batch') return
      this.#listenersReader ??= this.#claim("'packet'/'batch' listeners")
      queueMicrotask(() => this.#startEmitting())
    })
    ;(this as EventEmitter).on('removeListener', (event: string | symbol) => {
      if ((event === 'packet' || event === 'batch') && this.#listenerTotal() === 0 && this.#listenersReader) {
        // The delivery loop stops before the slot is free, so it never takes a batch from the
        // next reader.
        this.#emitAbort?.abort()
        this.#wakeDelivery?.()
        this.#unclaim(this.#listenersReader)
        this.#listenersReader = null
      }
    })
  }

  /**
   * Opens a capture on `iface`. The socket is set up completely (TPACKET_V3 ring, filter) before
   * it is bound to the interface, so the ring never holds a packet from another interface or
   * one the filter rejects.
   */
  static open(iface: string, options?: CaptureOptions): Capture {
    interfaceName(iface)
    const nativeOptions = captureOptions(options)
    return new Capture(iface, callNative(() => native.NativeCapture.open(iface, nativeOptions)))
  }

  /** The socket's file descriptor, -1 once closed. */
  get fd(): number {
    return this.#native.fd
  }

  get closed(): boolean {
    return this.#native.closed
  }

  /** Ring geometry and settings as the kernel accepted them. */
  get info(): CaptureInfo {
    return callNative(() => this.#native.info())
  }

  /** Cumulative counters since the capture was opened. */
  stats(): CaptureStats {
    return callNative(() => this.#native.stats())
  }

  /**
   * Replaces the filter (a pcap-filter expression, `tcpdump -dd` text or instructions; `null`
   * accepts all). Releases the held batch. After it returns no packet the new filter rejects
   * is delivered: packets that reached the ring under the old filter are filtered in user
   * space with the new program as they are read (what libpcap does), not discarded.
   */
  setFilter(filter: CaptureOptions['filter'] | null): void {
    const checked = filterOption(filter)
    this.#releaseHeld()
    callNative(() => this.#native.setFilter(checked))
  }

  /**
   * The next batch the kernel has handed over, or `null` when none is ready; never waits.
   * Releases the batch taken before (its Buffers are detached).
   */
  nextBatch(): PacketBatch | null {
    this.#checkNoReader('nextBatch()')
    return this.#nextBatch()
  }

  #nextBatch(): PacketBatch | null {
    this.#forgetBatch()
    return this.#adopt(callNative(() => this.#native.nextBatch()))
  }

  /**
   * Like `nextBatch()`, but blocks the thread until a batch is ready or `timeoutMs` passes
   * (forever when omitted or `Infinity`): for worker threads and scripts. `null` on timeout.
   */
  nextBatchBlocking(timeoutMs?: number): PacketBatch | null {
    this.#checkNoReader('nextBatchBlocking()')
    return this.#nextBatchBlocking(timeoutMs)
  }

  #nextBatchBlocking(timeoutMs: number | undefined): PacketBatch | null {
    const limit = checkTimeout(timeoutMs)
    this.#forgetBatch()
    const interrupt = this._interruptBlockingWait
    if (interrupt === null) return this.#adopt(callNative(() => this.#native.nextBatchBlocking(limit)))
    // A thread blocked here runs no event loop, so a message cannot stop it: the wait is cut into
    // slices, and the check runs between them (whatever reads through packets() too).
    const deadline = limit === undefined ? Infinity : performance.now() + limit
    for (;;) {
      if (interrupt() || this.closed) return null
      const slice = Math.max(0, Math.min(INTERRUPT_SLICE_MS, deadline - performance.now()))
      const batch = this.#adopt(callNative(() => this.#native.nextBatchBlocking(slice)))
      if (batch || performance.now() >= deadline) return batch
    }
  }

  /**
   * @internal Set by a FanoutPool worker: runs between slices of every blocking wait on this
   * capture; `true` ends the wait with `null` (the pool is closing).
   */
  _interruptBlockingWait: (() => boolean) | null = null

  /**
   * Packets, synchronously, blocking between batches. Ends after `limit` packets, when
   * `timeoutMs` has passed, or when the capture is closed. Each packet's `data` is valid until
   * the iterator moves to the next batch; leaving the loop releases the batch last taken.
   */
  packets(options?: PacketsOptions): PacketIterator {
    const { limit = Infinity, timeoutMs } = iterationOptions<PacketsOptions>(options, 'packets', ['limit', 'timeoutMs'])
    return new PacketIterator(this.#source('packets()'), limit, timeoutMs)
  }

  /**
   * Batches as they come, waiting without blocking the event loop. Ends when the capture is
   * closed; throws the capture's error (for example ENODEV when the interface is deleted), or an
   * AbortError when `signal` fires. Leaving the loop releases the batch last taken.
   */
  async *batches(options?: BatchesOptions): AsyncGenerator<PacketBatch, void, undefined> {
    const { signal } = iterationOptions<BatchesOptions>(options, 'batches', ['signal'])
    if (this.closed) return
    const reader = this.#claim('batches()')
    try {
      yield* this.#batches(signal)
    } finally {
      this.#unclaim(reader)
    }
  }

  /** `batches()` for a consumer that already holds the reader slot. */
  async *#batches(signal: AbortSignal | undefined): AsyncGenerator<PacketBatch, void, undefined> {
    try {
      for (;;) {
        if (signal?.aborted) throw abortError(signal)
        if (this.closed) return
        const batch = this.#nextBatch()
        if (batch) {
          yield batch
          continue
        }
        await this.#readable(signal)
      }
    } finally {
      this.#releaseHeld()
    }
  }

  /** Packets as they come (see `batches()`); `for await (const pkt of capture)` uses this. */
  iterate(options?: IterateOptions): AsyncPacketIterator {
    const { limit = Infinity, signal } = iterationOptions<IterateOptions>(options, 'iterate', ['limit', 'signal'])
    return new AsyncPacketIterator(this.#source('iterate() (for await)'), limit, signal)
  }

  [Symbol.asyncIterator](): AsyncPacketIterator {
    return this.iterate()
  }

  /**
   * A Readable in object mode of owned packets (copies, safe to keep), or with `batches: true`
   * of owned batches, for `pipeline`.
   * Destroying the stream stops reading; closing the capture ends it.
   */
  stream(options?: StreamOptions): Readable {
    const o = iterationOptions<StreamOptions>(options, 'stream', ['signal', 'highWaterMark', 'batches'])
    const { signal, batches: ownedBatches = false, highWaterMark = ownedBatches ? 16 : 1024 } = o
    const reader = this.#claim('stream()')
    // Destroying the stream must wake a pending wait, so the iterator gets a signal of its own.
    const stop = new AbortController()
    const batches = this.#batches(signal ? AbortSignal.any([signal, stop.signal]) : stop.signal)
    let pumping = false
    const capture = this
    const pump = async (): Promise<void> => {
      pumping = true
      try {
        for (;;) {
          const next = await batches.next()
          if (next.done) {
            this.#unclaim(reader)
            readable.push(null)
            return
          }
          let wantMore = true
          if (ownedBatches) wantMore = readable.push(next.value.copy())
          else for (const packet of next.value) wantMore = readable.push(new OwnedPacket(packet))
          // Everything is copied: the block can go back to the kernel while the consumer reads.
          next.value.release()
          if (!wantMore) return
        }
      } catch (e) {
        if (!stop.signal.aborted) readable.destroy(e as Error)
      } finally {
        pumping = false
      }
    }
    const readable = new Readable({
      objectMode: true,
      highWaterMark,
      read() {
        if (!pumping) void pump()
      },
      destroy(error, callback) {
        signal?.removeEventListener('abort', onAbort)
        stop.abort()
        void batches.return()
        capture.#unclaim(reader)
        callback(error)
      },
    })
    // A listener of our own on the caller's signal: it keeps the signal alive (an unreferenced
    // AbortSignal.timeout() may be collected before it fires) and ends the stream promptly.
    const onAbort = () => readable.destroy(abortError(signal!))
    signal?.addEventListener('abort', onAbort, { once: true })
    return readable
  }

  /**
   * Stops `'packet'`/`'batch'` delivery after the current packet. The batch being delivered is
   * kept, with the position in it, so nothing is lost: `resume()` goes on from the next packet.
   */
  pause(): this {
    this.#paused = true
    return this
  }

  /** Starts delivery again (when there are listeners), from where `pause()` stopped it. */
  resume(): this {
    this.#paused = false
    const wake = this.#wakeDelivery
    wake?.()
    queueMicrotask(() => this.#startEmitting())
    return this
  }

  get isPaused(): boolean {
    return this.#paused
  }

  /**
   * Releases the held batch (its Buffers are detached), ends every pending iteration, closes the
   * socket and emits `'close'`. Idempotent.
   */
  close(): void {
    if (this.closed) return
    // A block Node cannot detach stays attached: the socket closes either way.
    const batch = this.#batch
    batch?.markReleased()
    this.#batch = null
    this.#reader = null
    const detached = batch?.detach()
    if (detached === 'detached') callNative(() => this.#native.takeBackDetached())
    callNative(() => this.#native.close(detached !== 'refused'))
    this.emit('close')
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  #adopt(raw: { block: ArrayBuffer; table: Uint32Array } | null): PacketBatch | null {
    if (!raw) return null
    // No markAsUntransferable here: on Node >= 22 it sets a V8 detach key, and the detach that
    // release() needs then aborts the process. A transferred block is caught natively instead.
    this.#batch = new PacketBatch(raw, (batch) => {
      if (batch === this.#batch) {
        this.#forgetBatch()
        callNative(() => this.#native.release())
      }
    })
    return this.#batch
  }

  /**
   * Marks the held batch released and detaches it (here where the runtime allows, else in the
   * native call that follows, which then hands the block back). A block that cannot be detached
   * (marked with `markAsUntransferable`: on Node >= 22 a Node-API detach aborts the process) is
   * never handed back: the capture closes instead, leaving it attached and no longer written by
   * the kernel, and the caller gets EPERM.
   */
  #forgetBatch(): void {
    const batch = this.#batch
    if (batch === null) return
    batch.markReleased()
    this.#batch = null
    const detached = batch.detach()
    if (detached === 'detached') callNative(() => this.#native.takeBackDetached())
    if (detached !== 'refused') return
    this.#reader = null
    callNative(() => this.#native.close(false))
    this.emit('close')
    throw NetringError.of(
      'EPERM',
      `a batch of the capture on '${this.interface}' was marked untransferable (markAsUntransferable): Node cannot detach it, so its block cannot go back to the kernel and the capture was closed`,
      { interface: this.interface, hint: 'do not mark batch or packet memory untransferable; copy what you keep (packet.copy())' },
    )
  }

  #releaseHeld(): void {
    if (this.#batch) this.#batch.release()
  }

  /**
   * Resolves when a batch may be ready (call `nextBatch()`), the socket has an error (the next
   * `nextBatch()` throws it) or the capture closes; rejects with an AbortError when `signal`
   * fires. Waiting happens on a native thread; use it to drive your own loop over several
   * captures. Like `nextBatch()`, it releases the batch held before.
   */
  readable(signal?: AbortSignal): Promise<void> {
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw NetringError.invalidOption('signal', 'must be an AbortSignal')
    }
    this.#checkNoReader('readable()')
    return this.#readableUnlessClosed(signal)
  }

  #readableUnlessClosed(signal: AbortSignal | undefined): Promise<void> {
    if (this.closed) return Promise.resolve()
    return this.#readable(signal)
  }

  /**
   * Takes the reader slot for `name`. One consumer at a time: two would each get only some of
   * the packets (the one batch held is handed back whenever the other takes the next), so a
   * second is refused with EBUSY naming the first, never left to lose packets silently.
   */
  #claim(name: string): Reader {
    this.#checkNoReader(name)
    return (this.#reader = { name })
  }

  #unclaim(reader: Reader): void {
    if (this.#reader === reader) this.#reader = null
  }

  /** Direct calls (`nextBatch()`, ...) take no slot, but are refused while a consumer reads. */
  #checkNoReader(name: string): void {
    const current = this.#reader
    if (current === null) return
    throw NetringError.of('EBUSY', `${name} cannot read capture on '${this.interface}': ${current.name} is reading it`, {
      interface: this.interface,
      hint: `one reader at a time (two would each miss packets): end ${current.name} first (leave its loop, remove its listeners or destroy its stream), or open a second capture in the same fanout group`,
    })
  }

  /** What an iterator reads through: the capture's batches and a reader slot of its own. */
  #source(name: string): BatchSource {
    let reader: Reader | null = null
    const capture = this
    return {
      get closed() {
        return capture.closed
      },
      claim: () => {
        reader ??= capture.#claim(name)
      },
      unclaim: () => {
        if (reader) capture.#unclaim(reader)
        reader = null
      },
      nextBatch: () => capture.#nextBatch(),
      nextBatchBlocking: (timeoutMs) => capture.#nextBatchBlocking(timeoutMs),
      readable: (signal) => capture.#readableUnlessClosed(signal),
    }
  }

  #listenerTotal(): number {
    return this.listenerCount('packet') + this.listenerCount('batch')
  }

  async #readable(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) throw abortError(signal)
    // While a block is held the kernel reports the socket readable, so waiting hands the held
    // batch back first (natively too).
    this.#forgetBatch()
    // One native wait serves every iterator of this capture.
    this.#wait ??= callNative(() => this.#native.waitReadable()).finally(() => {
      this.#wait = null
    })
    if (!signal) {
      await this.#wait
      return
    }
    let onAbort!: () => void
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(abortError(signal))
      signal.addEventListener('abort', onAbort, { once: true })
    })
    try {
      await Promise.race([this.#wait, aborted])
    } finally {
      signal.removeEventListener('abort', onAbort)
      // Withdraw the native wait; other iterators sharing it wake with 0 and wait again.
      if (signal.aborted && !this.closed) this.#native.cancelWait()
    }
  }

  async #startEmitting(): Promise<void> {
    if (this.#emitting || this.#paused || this.closed || !this.#listenersReader) return
    if (this.#listenerTotal() === 0) return
    this.#emitting = true
    // Aborted when the last listener goes: the loop ends before the reader slot is free.
    const abort = (this.#emitAbort = new AbortController())
    try {
      for await (const batch of this.#batches(abort.signal)) {
        // Paused (by a listener, or while the loop waited for the ring): the iterator holds the
        // batch, and the loop the position in it, until resume().
        if (this.#paused) await this.#whilePaused(abort.signal)
        if (batch.released) continue
        this.emit('batch', batch)
        if (this.listenerCount('packet') > 0) {
          for (let i = 0; i < batch.length && !batch.released; ) {
            // pause() sets #paused: a plain field is cheaper to test per packet.
            if (this.#paused) await this.#whilePaused(abort.signal)
            else this.emit('packet', batch.packet(i++))
          }
        }
        if (this.#paused) await this.#whilePaused(abort.signal)
        if (this.#listenerTotal() === 0) break
      }
    } catch (e) {
      if (!abort.signal.aborted) this.emit('error', e as Error)
    } finally {
      this.#emitting = false
      this.#emitAbort = null
    }
  }

  /** Resolves at once unless paused; then on resume(), close() or the loop's abort. */
  async #whilePaused(signal: AbortSignal): Promise<void> {
    while (this.#paused && !this.closed && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.off('close', wake)
          this.#wakeDelivery = null
          resolve()
        }
        this.#wakeDelivery = wake
        this.once('close', wake)
      })
    }
  }
}
