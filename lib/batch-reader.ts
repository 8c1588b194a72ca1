// The consumption styles of a receiving socket, written once over its `nextBatch()`:
// `batches()` (async, waiting on the engine's reactor thread), `iterate()` / `for await`,
// `packets()` (sync), `'packet'`/`'batch'` events with pause/resume, and `stream()`.
// A subclass supplies the native calls: taking a batch, waiting, withdrawing a wait.

import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'

import { abortError, NetringError } from './errors'
import { iterationOptions } from './options'
import { AsyncPacketIterator, type HeldBatch, PacketIterator } from './packet-iterators'

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

  constructor() {
    super()
    // A listener for packets or batches starts delivery.
    ;(this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'packet' || event === 'batch') queueMicrotask(() => this.#startEmitting())
    })
  }

  abstract get closed(): boolean
  abstract nextBatch(): B | null
  abstract nextBatchBlocking(timeoutMs?: number): B | null
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

  /** The iterators' reader slot (see `BatchSource`). */
  claim(): void {}
  unclaim(): void {}

  /** Packets, synchronously, blocking between batches (see `Capture.packets`). */
  packets(options?: { limit?: number; timeoutMs?: number }): PacketIterator<P> {
    const { limit = Infinity, timeoutMs } = iterationOptions<{ limit?: number; timeoutMs?: number }>(options, 'packets', ['limit', 'timeoutMs'])
    return new PacketIterator<P>(this, limit, timeoutMs)
  }

  /** Batches as they come, waiting without blocking the event loop (see `Capture.batches`). */
  async *batches(options?: { signal?: AbortSignal }): AsyncGenerator<B, void, undefined> {
    const { signal } = iterationOptions<{ signal?: AbortSignal }>(options, 'batches', ['signal'])
    try {
      for (;;) {
        if (signal?.aborted) throw abortError(signal)
        if (this.closed) return
        const batch = this.nextBatch()
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
    return new AsyncPacketIterator<P>(this, limit, signal)
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
    const stop = new AbortController()
    const batches = this.batches({ signal: signal ? AbortSignal.any([signal, stop.signal]) : stop.signal })
    let pumping = false
    const pump = async (): Promise<void> => {
      pumping = true
      try {
        for (;;) {
          const next = await batches.next()
          if (next.done) {
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
    if (this.closed) return Promise.resolve()
    return this.#readable(signal)
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
    if (this.#emitting || this.#paused || this.closed) return
    if (this.listenerCount('packet') === 0 && this.listenerCount('batch') === 0) return
    this.#emitting = true
    const abort = (this.#emitAbort = new AbortController())
    try {
      for await (const batch of this.batches({ signal: abort.signal })) {
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
