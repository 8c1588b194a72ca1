// The asynchronous half of sending, shared by Injector and XdpSocket: `sendAsync` frames waiting
// for room in call order, the flush soon after, settling each frame's promise once the kernel has
// taken it (or refused it), backpressure waits, `drained()`, `writable()`, and what happens to an
// error nobody owns. Each socket supplies a `TxPort` over its native calls.
//
// The contract it keeps: every frame handed over either leaves, or is reported to whoever handed
// it over (its promise rejects, its write callback fails), and background work never throws: an
// error with no owner goes to `'error'` if someone listens, and is otherwise kept and thrown by
// the socket's next call (`throwKept()`).

import type { EventEmitter } from 'node:events'
import { Writable } from 'node:stream'

import { callNative, NetringError } from './errors'
import type { Binding } from './native'
import { integer, timeoutMs as checkTimeout } from './numbers'
import { boolean, checkOptions, u32 } from './options'

/** The native calls an Injector and an XdpSocket both have, under the same names. */
export interface NativeSender {
  readonly closed: boolean
  /** Kicks the kernel; throws what the kick threw. */
  flush(): number
  /** Blocks until everything queued was sent or `timeoutMs` passed (none: no limit); whether it all was. */
  drain(timeoutMs?: number | null): boolean
  /** `pending`: frames queued or still in flight. */
  stats(): { pending: number }
  /** Resolves once the ring may have room (0 when the wait was withdrawn). */
  waitWritable(): Promise<number>
  cancelWait(): void
}

/** How a socket numbers, settles and takes back the frames it queues. */
export interface TxPort {
  /** The offload metadata of send options (`{ offload }`), checked; EINVAL where it cannot be sent. */
  offloadOf(options: unknown): Binding.NativeOffload | undefined
  /** Queues a copy of `frame` (with its offload metadata); its sequence number, or -1 when full. */
  enqueue(frame: Buffer, offload: Binding.NativeOffload | undefined): number
  /** Throws what `enqueue` would throw for this frame (EMSGSIZE, EINVAL), queueing nothing. */
  check(frame: Buffer, offload: Binding.NativeOffload | undefined): void
  /** Every frame numbered below this was settled: sent, refused or withdrawn. */
  settledBefore(): number
  /** The frames refused since the last call, with the error that says why. */
  takeRejection(): { seqs: number[]; error: unknown } | null
  /** Takes queued frame `seq` back if the kernel has not taken it yet; whether it did. */
  withdraw(seq: number): boolean
}

/** How long to wait for POLLOUT before kicking again: frames that met backpressure (ENOBUFS)
 * need a new kick, and the kernel does not announce when that would succeed. */
const RETRY_MS = 2

/** A `sendAsync` loop on a ring with room never waits for anything: at least this often it
 * gives timers and I/O a turn (one setImmediate), so a timer can still stop it. */
const YIELD_MS = 4

/** A frame handed to `sendAsync`, until it is settled: `seq` once it is queued. */
interface Sender {
  frame: Buffer
  offload: Binding.NativeOffload | undefined
  seq: number
  resolve: () => void
  reject: (error: unknown) => void
}

/** A first-in first-out queue without Array.shift()'s copying (thousands of senders may wait). */
class Fifo<T> {
  #items: T[] = []
  #head = 0
  get length(): number {
    return this.#items.length - this.#head
  }
  peek(): T | undefined {
    return this.#items[this.#head]
  }
  push(item: T): void {
    this.#items.push(item)
  }
  shift(): T | undefined {
    const item = this.#items[this.#head]
    this.#items[this.#head++] = undefined as T
    if (this.#head === this.#items.length) {
      this.#items = []
      this.#head = 0
    }
    return item
  }
  /** Empties the queue; returns what it held, in order. */
  takeAll(): T[] {
    const all = this.#items.slice(this.#head)
    this.#items = []
    this.#head = 0
    return all
  }
}

export class TxQueue {
  readonly #native: NativeSender
  readonly #port: TxPort
  /** Where errors nobody owns go, if it has 'error' listeners. */
  readonly #emitter: EventEmitter
  /** `sendAsync` frames waiting for ring room, in call order. */
  #waiting = new Fifo<Sender>()
  /** `sendAsync` frames queued in the ring, by sequence number, until the kernel takes them. */
  #queued = new Fifo<Sender>()
  #driving = false
  #roomWait: Promise<void> | null = null
  #lastYield = performance.now()
  /** An error nobody could be told of yet (no owner, no 'error' listener): the next call throws it. */
  #kept: unknown = null
  /** `sendAsync` frames that rejected while still waiting for room (a failed kick, close()). */
  #dropped = 0

  constructor(nativeSender: NativeSender, port: TxPort, emitter: EventEmitter) {
    this.#native = nativeSender
    this.#port = port
    this.#emitter = emitter
  }

  /**
   * Queues `frame`, waiting for room if the ring is full, and flushes soon after (frames queued
   * in the same tick leave with one kick). Resolves once the frame is settled; rejects if it was
   * refused or the send failed, and then the frame never leaves later.
   */
  sendAsync(frame: unknown, options: unknown): Promise<void> {
    return this.#send(() => ({ frame: asBuffer(frame), offload: this.#port.offloadOf(options) }))
  }

  /** Refuses now (EMSGSIZE, EINVAL) a frame and offload metadata that could never be queued. */
  #check({ frame, offload }: Pick<Sender, 'frame' | 'offload'>): void {
    callNative(() => this.#port.check(frame, offload))
  }

  /** `sendAsync` of a frame and offload metadata that `checked` gives (its throw rejects). */
  #send(checked: () => Pick<Sender, 'frame' | 'offload'>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.throwKept()
      const sender: Sender = { ...checked(), seq: -1, resolve, reject }
      // Behind frames already waiting for room, never ahead of them.
      if (this.#waiting.length > 0 || !this.#queue(sender)) {
        // Queueing checks a frame; one that has to wait is checked now, so that it fails here
        // and not when it reaches the ring. It is copied, as it would have been had there been
        // room: what is sent is what was handed over, whatever the caller does with its buffer
        // afterwards (changes it, releases the capture batch it came from, transfers it).
        this.#check(sender)
        sender.frame = Buffer.from(sender.frame)
        this.#waiting.push(sender)
      }
      void this.#drive()
    })
  }

  /**
   * The socket's counts with this queue's added: `sendAsync` frames waiting for ring room are
   * pending too, and those that rejected before they reached the ring (close(), a failed kick)
   * were withdrawn.
   */
  withQueued<S extends { pending: number; withdrawn: number }>(s: S): S {
    return { ...s, pending: s.pending + this.#waiting.length, withdrawn: s.withdrawn + this.#dropped }
  }

  /** Flushes, then settles what the kernel took. Throws what the flush threw. */
  flush(): number {
    try {
      return callNative(() => this.#native.flush())
    } finally {
      this.settle()
    }
  }

  /** Flushes and blocks until everything was sent or `timeoutMs` passed; whether it all was. */
  drain(timeoutMs: unknown, option = 'timeoutMs'): boolean {
    const limit = checkTimeout(timeoutMs, option)
    this.flush()
    try {
      return callNative(() => this.#native.drain(limit))
    } finally {
      this.settle()
    }
  }

  /** Flushes and resolves once everything queued was sent, `sendAsync` frames still waiting for
   * room included, without blocking the event loop. */
  async drained(): Promise<void> {
    this.throwKept()
    for (;;) {
      this.flush()
      if (callNative(() => this.#native.stats().pending) === 0 && this.#waiting.length === 0) return
      await this.#room()
    }
  }

  /**
   * A Writable (object mode) of frames: Buffers, Uint8Arrays, or packets (`{ data }`). It waits
   * for ring room (backpressure) and flushes and drains on end; a frame that fails fails the
   * stream. With `offload: true` a chunk's own `offload` (a packet's from a capture with
   * `offloadInfo`, or `{ data, offload }`) is sent as its metadata.
   */
  writable(options: unknown): Writable {
    const { highWaterMark = 256, offload = false } = checkOptions(options, 'writable', { highWaterMark: u32, offload: boolean }) as {
      highWaterMark?: number
      offload?: boolean
    }
    // A socket that sends no offload metadata refuses it now, not at the first chunk.
    if (offload) this.#port.offloadOf({ offload: {} })
    // A chunk's frame and offload metadata, read once: what is queued is what was checked.
    const chunkOf = (chunk: unknown) => ({
      frame: frameOf(chunk),
      offload: offload ? this.#port.offloadOf({ offload: (chunk as { offload?: unknown }).offload ?? undefined }) : undefined,
    })
    const settle = (sent: () => Promise<unknown>, callback: (error?: Error | null) => void) => {
      sent().then(() => callback(), callback)
    }
    return new Writable({
      objectMode: true,
      highWaterMark,
      write: (chunk, _encoding, callback) =>
        settle(async () => {
          const c = chunkOf(chunk)
          return this.#send(() => c)
        }, callback),
      writev: (chunks, callback) =>
        settle(async () => {
          // Every chunk is checked in full (what the socket would refuse) before any is queued,
          // as sendFrames() does: one refused chunk fails the whole writev (its callback gets the
          // error) and none of it is sent. A single write needs no such check: queueing it checks it.
          const all = chunks.map((c) => chunkOf(c.chunk))
          for (const c of all) this.#check(c)
          return Promise.all(all.map((c) => this.#send(() => c)))
        }, callback),
      final: (callback) => settle(() => this.drained(), callback),
    })
  }

  /** The socket closed: every `sendAsync` frame not settled yet rejects with `error`. */
  abandon(error: unknown): void {
    this.#dropped += this.#waiting.length
    for (const sender of [...this.#queued.takeAll(), ...this.#waiting.takeAll()]) sender.reject(error)
  }

  /** Gives back a collected slot: background work, so an error is reported, never thrown. */
  giveBack(giveBack: () => void): void {
    if (this.#native.closed) return
    try {
      giveBack()
    } catch (e) {
      this.report(e)
    }
  }

  /**
   * An error with no owner: to 'error' listeners, or kept for the next call to throw. A listener
   * that throws does so on a later tick (an uncaught exception, as a throwing listener of a Node
   * socket's 'error' is), never into the flush that reported it: the frames queued with it, and
   * their owners, are not touched by it.
   */
  report(error: unknown): void {
    if (this.#emitter.listenerCount('error') === 0) {
      this.#kept ??= error
      return
    }
    try {
      this.#emitter.emit('error', error as Error)
    } catch (thrown) {
      process.nextTick(() => {
        throw thrown
      })
    }
  }

  throwKept(): void {
    if (this.#kept === null) return
    const error = this.#kept
    this.#kept = null
    throw error
  }

  /** Settles the `sendAsync` frames the kernel took; reports refused frames to their owners. */
  settle(): void {
    // Through callNative: settle runs after a flush, which a getter of a list being sent may call
    // (the binding then refuses the socket as busy: EBUSY, not a raw napi-rs error).
    if (callNative(() => this.#native.closed)) return
    const rejection = callNative(() => this.#port.takeRejection())
    const error = rejection && NetringError.fromNative(rejection.error)
    const refused = rejection && new Set(rejection.seqs)
    let owned = 0
    if (this.#queued.length > 0) {
      const before = callNative(() => this.#port.settledBefore())
      for (let s = this.#queued.peek(); s && s.seq < before; s = this.#queued.peek()) {
        this.#queued.shift()
        if (refused?.has(s.seq)) {
          owned++
          s.reject(error)
        } else s.resolve()
      }
    }
    // One report per refused frame nobody owns (sent with send(), sendFrames() or a slot).
    for (let i = owned; rejection && i < rejection.seqs.length; i++) this.report(error)
  }

  /** Queues a sender's frame if there is room (then it waits to be settled); false when full. */
  #queue(sender: Sender): boolean {
    const seq = callNative(() => this.#port.enqueue(sender.frame, sender.offload))
    if (seq < 0) return false
    sender.seq = seq
    this.#queued.push(sender)
    return true
  }

  /**
   * Runs while `sendAsync` frames wait for room or for the kernel: queues waiting frames in
   * call order, flushes, settles, waits for room. One loop, so waiters never race each other.
   */
  async #drive(): Promise<void> {
    if (this.#driving) return
    this.#driving = true
    try {
      for (;;) {
        // Frames sent in the same tick leave with one kick.
        await this.#yield()
        if (this.#native.closed) {
          // Closed by the socket itself, not by close() (which abandons with its own error): a
          // slot that could not be taken back (moved away, markAsUntransferable) closed it. Every
          // frame still waiting or queued never leaves now: its owner is told, not left waiting.
          this.abandon(NetringError.of('EBADF', 'the socket was closed before this frame was sent', { syscall: 'sendto' }))
          return
        }
        for (let sender = this.#waiting.peek(); sender; sender = this.#waiting.peek()) {
          try {
            if (!this.#queue(sender)) break
          } catch (e) {
            sender.reject(e)
          }
          this.#waiting.shift()
        }
        this.#flushForOwners()
        if (this.#waiting.length === 0 && this.#queued.length === 0) return
        await this.#room()
      }
    } finally {
      this.#driving = false
    }
  }

  /** A microtask usually; a full turn of the event loop once YIELD_MS have passed without one. */
  #yield(): Promise<void> {
    if (performance.now() - this.#lastYield < YIELD_MS) return Promise.resolve()
    return new Promise((resolve) =>
      setImmediate(() => {
        this.#lastYield = performance.now()
        resolve()
      }),
    )
  }

  /**
   * The background flush: never throws. A failed kick (ENETDOWN, ENXIO, ...) is the error of
   * every `sendAsync` frame still queued or waiting: those queued are withdrawn from the ring,
   * so a frame whose promise rejected never leaves later.
   */
  #flushForOwners(): void {
    let error: unknown
    try {
      this.flush()
      return
    } catch (e) {
      error = e
    }
    if (this.#native.closed) return
    const owners = this.#queued.length + this.#waiting.length
    const taken: Sender[] = []
    for (const sender of this.#queued.takeAll()) {
      if (this.#port.withdraw(sender.seq)) sender.reject(error)
      else taken.push(sender) // the kernel has it: settled by a later flush
    }
    for (const sender of taken) this.#queued.push(sender)
    this.#dropped += this.#waiting.length
    for (const sender of this.#waiting.takeAll()) sender.reject(error)
    if (owners === 0) this.report(error)
  }

  /** Resolves when the ring may have room: POLLOUT from the reactor, or a short retry timer.
   * One wait serves every caller (a second native wait would withdraw the first). */
  #room(): Promise<void> {
    this.#roomWait ??= this.#waitForRoom().finally(() => {
      this.#roomWait = null
    })
    return this.#roomWait
  }

  async #waitForRoom(): Promise<void> {
    if (this.#native.closed) return
    let timer: NodeJS.Timeout | undefined
    const retry = new Promise<void>((resolve) => (timer = setTimeout(resolve, RETRY_MS)))
    const writable = callNative(() => this.#native.waitWritable())
    try {
      await Promise.race([writable, retry])
    } finally {
      clearTimeout(timer)
      if (!this.#native.closed) this.#native.cancelWait()
    }
  }
}

/** Every frame starts with an Ethernet header: a shorter slot could only be sent as an error. */
const ETHERNET_HEADER_LEN = 14

/** The length asked of `allocate()` / `allocateRun()`: a whole number, at least an Ethernet header. */
export const slotLength = (v: unknown): number => integer(v, 'length', ETHERNET_HEADER_LEN)

/** The count asked of `allocateRun()`: at least one slot (0 would read as "none free"). */
export const runCount = (v: unknown): number => integer(v, 'count', 1)

/** A frame argument as a Buffer (no copy), or EINVAL naming `option`. */
export function asBuffer(frame: unknown, option = 'frame'): Buffer {
  if (Buffer.isBuffer(frame)) return frame
  // A view of a detached ArrayBuffer (transferred, or a released ring view) is empty: Buffer.from
  // would throw a TypeError on it; an empty frame is what the length check refuses.
  if (frame instanceof Uint8Array) return frame.byteLength === 0 ? Buffer.alloc(0) : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength)
  throw NetringError.invalidOption(option, `must be a Buffer or a Uint8Array, got ${frame === null ? 'null' : typeof frame}`)
}

/** A `writable()` chunk's frame: a Buffer, a Uint8Array, or a packet's `data`. */
export function frameOf(chunk: unknown): Buffer {
  if (chunk instanceof Uint8Array) return asBuffer(chunk)
  const data = (chunk as { data?: unknown } | null)?.data
  if (data instanceof Uint8Array) return asBuffer(data)
  throw NetringError.invalidOption('chunk', 'must be a Buffer, a Uint8Array or a packet with data')
}
