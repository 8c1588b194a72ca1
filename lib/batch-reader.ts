// The consumption styles of a receiving socket (a Capture, an XdpSocket), written once over the
// native take of a batch: `nextBatch()` (and its blocking twin) is the only way batches come
// out. `batches()` turns it into an async iterator by waiting for readiness on the engine's
// reactor thread; `for await`, the `'packet'`/`'batch'` events and `stream()` are adapters over
// it, and `packets()` is the synchronous one. A subclass supplies the native calls: taking a
// batch, handing the held one back, waiting, withdrawing a wait, owning a copy.

import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'

import { abortError, NetringError } from './errors'
import { timeoutMs as checkTimeout } from './numbers'
import { iterationOptions } from './options'
import { AsyncPacketIterator, type BatchSource, type HeldBatch, PacketIterator } from './packet-iterators'

/** How long a blocking wait with an interrupt check runs between two checks. */
const INTERRUPT_SLICE_MS = 100

export interface ReaderEvents<B, P> {
  packet: [packet: P]
  batch: [batch: B]
  error: [error: Error]
  close: []
}

/** A consumer holding the reader slot, by the name errors show. */
interface Reader {
  name: string
}

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
  /**
   * Owned packets (or batches) buffered ahead of the consumer. @default 1024 (2 with `batches`:
   * the ring is the buffer, and every block copied ahead is fresh memory the copy must fault in)
   */
  highWaterMark?: number
  /**
   * Push owned batches (`batch.copy()`: one copy per block) instead of owned packets: a
   * pipeline then pays per block, not per packet. @default false
   */
  batches?: boolean
}

/**
 * Owned batches a `stream({ batches: true })` copies ahead of its consumer. Few: the ring already
 * buffers what the consumer has not read, and a copy into memory the process just freed is
 * several times cheaper than into fresh pages (16 blocks ahead, 64 MiB, drained 1.5x slower).
 */
const OWNED_BATCHES_AHEAD = 2

export abstract class BatchReader<B extends HeldBatch<P>, P> extends EventEmitter<ReaderEvents<B, P>> {
  #wait: Promise<number> | null = null
  #paused = false
  #emitting = false
  #emitAbort: AbortController | null = null
  /** The consumer reading now (one at a time), or null. */
  #reader: Reader | null = null
  /** The reader slot held by the 'packet'/'batch' listeners while there are any. */
  #listenersReader: Reader | null = null
  /** Wakes the delivery loop that pause() stopped (resume() or close() calls it). */
  #wakeDelivery: (() => void) | null = null

  constructor() {
    super()
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

  abstract readonly interface: string
  abstract get closed(): boolean
  /** The native take of the next batch, adopted (the held one was handed back already). */
  protected abstract nativeNext(): B | null
  /** The same, blocking the thread up to `timeoutMs` (forever when `undefined`). */
  protected abstract nativeNextBlocking(timeoutMs: number | undefined): B | null
  /** Marks the held batch released (the native call that follows takes it back). */
  protected abstract forgetBatch(): void
  /** Releases the batch held now, if any (leaving a loop gives it back). */
  protected abstract releaseHeld(): void
  /** The native wait: resolves with epoll events, or 0 when withdrawn. */
  protected abstract waitNative(): Promise<number>
  /** Withdraws the native wait; other iterators sharing it wake with 0 and wait again. */
  protected abstract cancelNative(): void
  /** An owned copy of a packet, for `stream()`. */
  protected abstract own(packet: P): unknown
  /** An owned copy of a batch, for `stream({ batches: true })`; without it that option is refused. */
  protected ownBatch?(batch: B): unknown
  /** A wait never lasts longer than this (0: no limit); the loop then takes again. */
  protected readonly recheckMs: number = 0
  /** What EBUSY says is being read, and what more its hint suggests. */
  protected readonly readerNoun: string = 'the socket'
  protected readonly busyHintMore: string = ''

  /**
   * @internal Set by a FanoutPool worker: runs between slices of every blocking wait on this
   * socket; `true` ends the wait with `null` (the pool is closing).
   */
  _interruptBlockingWait: (() => boolean) | null = null

  /**
   * The next batch the kernel has handed over, or `null` when none is ready; never waits.
   * Releases the batch taken before (its Buffers are detached).
   */
  nextBatch(): B | null {
    this.#checkNoReader('nextBatch()')
    return this.#nextBatch()
  }

  #nextBatch(): B | null {
    this.forgetBatch()
    return this.nativeNext()
  }

  /**
   * Like `nextBatch()`, but blocks the thread until a batch is ready or `timeoutMs` passes
   * (forever when omitted or `Infinity`): for worker threads and scripts. `null` on timeout.
   */
  nextBatchBlocking(timeoutMs?: number): B | null {
    this.#checkNoReader('nextBatchBlocking()')
    return this.#nextBatchBlocking(timeoutMs)
  }

  #nextBatchBlocking(timeoutMs: number | undefined): B | null {
    const limit = checkTimeout(timeoutMs)
    this.forgetBatch()
    const interrupt = this._interruptBlockingWait
    if (interrupt === null) return this.nativeNextBlocking(limit)
    // A thread blocked here runs no event loop, so a message cannot stop it: the wait is cut into
    // slices, and the check runs between them (whatever reads through packets() too).
    const deadline = limit === undefined ? Infinity : performance.now() + limit
    for (;;) {
      if (interrupt() || this.closed) return null
      const slice = Math.max(0, Math.min(INTERRUPT_SLICE_MS, deadline - performance.now()))
      const batch = this.nativeNextBlocking(slice)
      if (batch || performance.now() >= deadline) return batch
    }
  }

  /**
   * Packets, synchronously, blocking between batches. Ends after `limit` packets, when
   * `timeoutMs` has passed, or when the socket is closed. Each packet's `data` is valid until
   * the iterator moves to the next batch; leaving the loop releases the batch last taken.
   */
  packets(options?: PacketsOptions): PacketIterator<P> {
    const { limit = Infinity, timeoutMs } = iterationOptions<PacketsOptions>(options, 'packets', ['limit', 'timeoutMs'])
    return new PacketIterator<P>(this.#source('packets()'), limit, timeoutMs)
  }

  /**
   * Batches as they come, waiting without blocking the event loop. Ends when the socket is
   * closed; throws the socket's error (for example ENODEV when the interface is deleted), or an
   * AbortError when `signal` fires. Leaving the loop releases the batch last taken.
   */
  batches(options?: BatchesOptions): AsyncGenerator<B, void, undefined> {
    const { signal } = iterationOptions<BatchesOptions>(options, 'batches', ['signal'])
    // An async generator queues return() behind a pending next(), which waits for the ring: on
    // a quiet link for ever, with the reader slot held. So return() withdraws that wait first.
    const stop = new AbortController()
    const generator = this.#readerBatches(signal, stop.signal)
    const end = generator.return.bind(generator)
    generator.return = (value) => {
      stop.abort()
      return end(value)
    }
    return generator
  }

  async *#readerBatches(signal: AbortSignal | undefined, stop: AbortSignal): AsyncGenerator<B, void, undefined> {
    if (this.closed) return
    const reader = this.#claim('batches()')
    try {
      yield* this.#batches(signal ? AbortSignal.any([signal, stop]) : stop)
    } catch (e) {
      // Ended by return() while waiting: the pending next() is done, not an AbortError.
      if (!stop.aborted) throw e
    } finally {
      this.#unclaim(reader)
    }
  }

  /** `batches()` for a consumer that already holds the reader slot. */
  async *#batches(signal: AbortSignal | undefined): AsyncGenerator<B, void, undefined> {
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
      this.releaseHeld()
    }
  }

  /** Packets as they come (see `batches()`); `for await (const pkt of socket)` uses this. */
  iterate(options?: IterateOptions): AsyncPacketIterator<P> {
    const { limit = Infinity, signal } = iterationOptions<IterateOptions>(options, 'iterate', ['limit', 'signal'])
    return new AsyncPacketIterator<P>(this.#source('iterate() (for await)'), limit, signal)
  }

  [Symbol.asyncIterator](): AsyncPacketIterator<P> {
    return this.iterate()
  }

  /**
   * A Readable in object mode of owned packets (copies, safe to keep), for `pipeline`.
   * Destroying the stream stops reading; closing the socket ends it.
   */
  stream(options?: Omit<StreamOptions, 'batches'>): Readable {
    const keys: (keyof StreamOptions)[] = this.ownBatch ? ['signal', 'highWaterMark', 'batches'] : ['signal', 'highWaterMark']
    const o = iterationOptions<StreamOptions>(options, 'stream', keys)
    const { signal, batches: ownedBatches = false, highWaterMark = ownedBatches ? OWNED_BATCHES_AHEAD : 1024 } = o
    const reader = this.#claim('stream()')
    // Destroying the stream must wake a pending wait, so the iterator gets a signal of its own.
    const stop = new AbortController()
    const batches = this.#batches(signal ? AbortSignal.any([signal, stop.signal]) : stop.signal)
    let pumping = false
    const self = this
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
          const batch = next.value
          let wantMore = true
          if (ownedBatches) wantMore = readable.push(this.ownBatch!(batch))
          else for (let i = 0; i < batch.length && !batch.released; i++) wantMore = readable.push(this.own(batch.packet(i)))
          // Everything is copied: the batch can go back to the kernel while the consumer reads.
          batch.release()
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
        self.#unclaim(reader)
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
   * Resolves when a batch may be ready (call `nextBatch()`), the socket has an error (the next
   * `nextBatch()` throws it) or it closes; rejects with an AbortError when `signal` fires.
   * Waiting happens on a native thread; use it to drive your own loop over several sockets.
   * Like `nextBatch()`, it releases the batch held before.
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

  /** Frees the reader slot (closing ends every consumer). */
  protected dropReader(): void {
    this.#reader = null
  }

  #closeFinished = false

  /** Whether the close was finished: by close(), or after the socket closed itself. */
  protected get closeFinished(): boolean {
    return this.#closeFinished
  }

  /**
   * What close() does after the native close, once, and what a call that could not take lent
   * memory back does after the socket closed itself (see callTakingBack): the held batch marked
   * released, readers ended, waiting sends told (`abandonWaiting`), 'close' emitted.
   */
  protected finishClose(): void {
    if (this.#closeFinished) return
    this.#closeFinished = true
    this.forgetBatch()
    this.dropReader()
    this.abandonWaiting()
    this.emit('close')
  }

  /** `finishClose`, bound: what callTakingBack runs when the socket closed itself. */
  protected readonly closedItself = (): void => this.finishClose()

  /** Tells frames waiting to be sent that the socket closed (a socket that sends overrides it). */
  protected abandonWaiting(): void {}

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
    const iface = this.interface
    throw NetringError.of('EBUSY', `${name} cannot read ${this.readerNoun} on '${iface}': ${current.name} is reading it`, {
      interface: iface,
      hint: `one reader at a time (two would each miss packets): end ${current.name} first (leave its loop, remove its listeners or destroy its stream)${this.busyHintMore}`,
    })
  }

  /** What an iterator reads through: the socket's batches and a reader slot of its own. */
  #source(name: string): BatchSource<P> {
    let reader: Reader | null = null
    const self = this
    return {
      get closed() {
        return self.closed
      },
      claim: () => {
        reader ??= self.#claim(name)
      },
      unclaim: () => {
        if (reader) self.#unclaim(reader)
        reader = null
      },
      nextBatch: () => self.#nextBatch(),
      nextBatchBlocking: (timeoutMs) => self.#nextBatchBlocking(timeoutMs),
      readable: (signal) => self.#readableUnlessClosed(signal),
    }
  }

  #listenerTotal(): number {
    return this.listenerCount('packet') + this.listenerCount('batch')
  }

  async #readable(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) throw abortError(signal)
    // While a batch is held the kernel reports the socket readable, so waiting hands the held
    // batch back first (natively too).
    this.forgetBatch()
    // One native wait serves every iterator of this socket.
    this.#wait ??= this.waitNative().finally(() => {
      this.#wait = null
    })
    if (!signal && this.recheckMs === 0) {
      await this.#wait
      return
    }
    const racers: Promise<unknown>[] = [this.#wait]
    let timer: NodeJS.Timeout | undefined
    if (this.recheckMs > 0) racers.push(new Promise((resolve) => (timer = setTimeout(resolve, this.recheckMs))))
    let onAbort: (() => void) | undefined
    if (signal) {
      racers.push(
        new Promise<never>((_, reject) => {
          onAbort = () => reject(abortError(signal))
          signal.addEventListener('abort', onAbort, { once: true })
        }),
      )
    }
    try {
      await Promise.race(racers)
    } finally {
      clearTimeout(timer)
      if (onAbort) signal!.removeEventListener('abort', onAbort)
      if (signal?.aborted && !this.closed) this.cancelNative()
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
        if (this.#paused && !(await this.#whilePaused(abort.signal))) break
        if (batch.released) continue
        // A listener that throws is reported as 'error' and delivery goes on with the next
        // packet: ending it would leave the other packets, and the capture's reader slot, to
        // nobody. (Without an 'error' listener the emit throws, as EventEmitter's do.)
        try {
          this.emit('batch', batch)
        } catch (e) {
          this.emit('error', e as Error)
        }
        if (this.listenerCount('packet') > 0) {
          for (let i = 0; i < batch.length && !batch.released; ) {
            // pause() sets #paused: a plain field is cheaper to test per packet.
            if (this.#paused) {
              if (!(await this.#whilePaused(abort.signal))) break
              continue
            }
            try {
              this.emit('packet', batch.packet(i++))
            } catch (e) {
              this.emit('error', e as Error)
            }
          }
        }
        if (this.#paused && !(await this.#whilePaused(abort.signal))) break
        if (this.#listenerTotal() === 0) break
      }
    } catch (e) {
      if (!abort.signal.aborted) this.emit('error', e as Error)
    } finally {
      this.#emitting = false
      this.#emitAbort = null
      // The last listener went (so this loop was told to end) and another came before it had:
      // that one's start found this loop still running. A `once` listener that adds the next
      // one does exactly this on every packet; the loop hands over instead of leaving it unfed.
      if (abort.signal.aborted && this.#listenersReader && this.#listenerTotal() > 0) queueMicrotask(() => this.#startEmitting())
    }
  }

  /**
   * Resolves at once unless paused; then on resume(), close() or the loop's abort. False when
   * the loop was aborted (its last listener went while paused): it must end, not spin.
   */
  async #whilePaused(signal: AbortSignal): Promise<boolean> {
    const events = this as EventEmitter
    while (this.#paused && !this.closed && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          events.off('close', wake)
          this.#wakeDelivery = null
          resolve()
        }
        this.#wakeDelivery = wake
        events.once('close', wake)
      })
    }
    return !signal.aborted
  }
}
