// The consumption styles of a receiving socket, written once over its `nextBatch()`:
// `batches()` (async, waiting on the engine's reactor thread), `iterate()` / `for await`,
// `packets()` (sync), `'packet'`/`'batch'` events with pause/resume, and `stream()`.
// A subclass supplies the native calls: taking a batch, waiting, withdrawing a wait.

import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'

import { abortError, NetringError } from './errors'
import { iterationOptions } from './options'
import { AsyncPacketIterator, type BatchSource, type HeldBatch, PacketIterator } from './packet-iterators'

export interface ReaderEvents<B, P> {
  packet: [packet: P]
  batch: [batch: B]
  error: [error: Error]
  close: []
}

export abstract class BatchReader<B extends HeldBatch<P>, P> extends EventEmitter<ReaderEvents<B, P>> {
  #wait: Promise<number> | null = null
  #paused = false
  #emitting = false
  #emitAbort: AbortController | null = null
  /** The consumer reading now (one at a time, as on a Capture), or null. */
  #reader: { name: string } | null = null
  /** The reader slot held by the 'packet'/'batch' listeners while there are any. */
  #listenersReader: { name: string } | null = null

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
        // The delivery loop stops before the slot is free, so it never takes the next reader's batch.
        this.#emitAbort?.abort()
        this.#unclaim(this.#listenersReader)
        this.#listenersReader = null
      }
    })
  }

  abstract readonly interface: string
  abstract get closed(): boolean
  /** The native takes behind `nextBatch()` / `nextBatchBlocking()`, without the reader check. */
  protected abstract takeBatch(): B | null
  protected abstract takeBatchBlocking(timeoutMs?: number): B | null
  /** Marks the held batch released (the native wait that follows takes it back). */
  protected abstract forgetBatch(): void
  /** Releases the batch held now, if any (leaving a loop gives it back). */
  protected abstract releaseHeld(): void
  /** The native wait: resolves with epoll events, or 0 when withdrawn. */
  protected abstract waitNative(): Promise<number>
  protected abstract cancelNative(): void
  /** An owned copy of a packet, for `stream()`. */
  protected abstract own(packet: P): unknown
  /** A wait never lasts longer than this (0: no limit); the next `nextBatch()` re-checks. */
  protected readonly recheckMs: number = 0

  /** The next batch, or `null`; refused with EBUSY while a consumer reads (see `Capture.nextBatch`). */
  nextBatch(): B | null {
    this.#checkNoReader('nextBatch()')
    return this.takeBatch()
  }

  /** Like `nextBatch()`, blocking the thread up to `timeoutMs` (forever when omitted). */
  nextBatchBlocking(timeoutMs?: number): B | null {
    this.#checkNoReader('nextBatchBlocking()')
    return this.takeBatchBlocking(timeoutMs)
  }

  /** Packets, synchronously, blocking between batches (see `Capture.packets`). */
  packets(options?: { limit?: number; timeoutMs?: number }): PacketIterator<P> {
    const { limit = Infinity, timeoutMs } = iterationOptions<{ limit?: number; timeoutMs?: number }>(options, 'packets', ['limit', 'timeoutMs'])
    return new PacketIterator<P>(this.#source('packets()'), limit, timeoutMs)
  }

  /** Batches as they come, waiting without blocking the event loop (see `Capture.batches`). */
  async *batches(options?: { signal?: AbortSignal }): AsyncGenerator<B, void, undefined> {
    const { signal } = iterationOptions<{ signal?: AbortSignal }>(options, 'batches', ['signal'])
    if (this.closed) return
    const reader = this.#claim('batches()')
    try {
      yield* this.#batches(signal)
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
        const batch = this.takeBatch()
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

  /** Packets as they come; `for await (const pkt of socket)` uses this. */
  iterate(options?: { limit?: number; signal?: AbortSignal }): AsyncPacketIterator<P> {
    const { limit = Infinity, signal } = iterationOptions<{ limit?: number; signal?: AbortSignal }>(options, 'iterate', ['limit', 'signal'])
    return new AsyncPacketIterator<P>(this.#source('iterate() (for await)'), limit, signal)
  }

  [Symbol.asyncIterator](): AsyncPacketIterator<P> {
    return this.iterate()
  }

  /** A Readable in object mode of owned packets (copies, safe to keep). */
  stream(options?: { signal?: AbortSignal; highWaterMark?: number }): Readable {
    const { signal, highWaterMark = 1024 } = iterationOptions<{ signal?: AbortSignal; highWaterMark?: number }>(options, 'stream', [
      'signal',
      'highWaterMark',
    ])
    const reader = this.#claim('stream()')
    const stop = new AbortController()
    const batches = this.#batches(signal ? AbortSignal.any([signal, stop.signal]) : stop.signal)
    let pumping = false
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
          for (let i = 0; i < next.value.length; i++) wantMore = readable.push(this.own(next.value.packet(i)))
          next.value.release()
          if (!wantMore) return
        }
      } catch (e) {
        if (!stop.signal.aborted) readable.destroy(e as Error)
      } finally {
        pumping = false
      }
    }
    const unclaim = () => this.#unclaim(reader)
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
        unclaim()
        callback(error)
      },
    })
    const onAbort = () => readable.destroy(abortError(signal!))
    signal?.addEventListener('abort', onAbort, { once: true })
    return readable
  }

  /** Stops `'packet'`/`'batch'` delivery; the batch being delivered is released. */
  pause(): this {
    this.#paused = true
    this.#emitAbort?.abort()
    return this
  }

  resume(): this {
    this.#paused = false
    queueMicrotask(() => this.#startEmitting())
    return this
  }

  get isPaused(): boolean {
    return this.#paused
  }

  /** Resolves when a batch may be ready, the socket has an error, or it closes. */
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

  /**
   * Takes the reader slot for `name`. One consumer at a time: two would each get only some of
   * the packets (taking a batch hands back the one the other holds), so a second is refused
   * with EBUSY naming the first, never left to lose packets silently.
   */
  #claim(name: string): { name: string } {
    this.#checkNoReader(name)
    return (this.#reader = { name })
  }

  #unclaim(reader: { name: string }): void {
    if (this.#reader === reader) this.#reader = null
  }

  /** Direct calls (`nextBatch()`, ...) take no slot, but are refused while a consumer reads. */
  #checkNoReader(name: string): void {
    const current = this.#reader
    if (current === null) return
    const iface = this.interface
    throw NetringError.of('EBUSY', `${name} cannot read the socket on '${iface}': ${current.name} is reading it`, {
      interface: iface,
      hint: `one reader at a time (two would each miss packets): end ${current.name} first (leave its loop, remove its listeners or destroy its stream)`,
    })
  }

  /** What an iterator reads through: the socket's batches and a reader slot of its own. */
  #source(name: string): BatchSource<P> {
    let reader: { name: string } | null = null
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
      nextBatch: () => self.takeBatch(),
      nextBatchBlocking: (timeoutMs) => self.takeBatchBlocking(timeoutMs),
      readable: (signal) => self.#readableUnlessClosed(signal),
    }
  }

  #listenerTotal(): number {
    return this.listenerCount('packet') + this.listenerCount('batch')
  }

  async #readable(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) throw abortError(signal)
    this.forgetBatch()
    this.#wait ??= this.waitNative().finally(() => {
      this.#wait = null
    })
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
    const abort = (this.#emitAbort = new AbortController())
    try {
      for await (const batch of this.#batches(abort.signal)) {
        this.emit('batch', batch)
        if (this.listenerCount('packet') > 0) {
          for (let i = 0; i < batch.length && !batch.released && !this.#paused; i++) {
            this.emit('packet', batch.packet(i))
          }
        }
        if (this.listenerCount('packet') === 0 && this.listenerCount('batch') === 0) break
      }
    } catch (e) {
      if (!abort.signal.aborted) this.emit('error', e as Error)
    } finally {
      this.#emitting = false
      this.#emitAbort = null
    }
    if (abort.signal.aborted && !this.#paused) void this.#startEmitting()
  }
}
