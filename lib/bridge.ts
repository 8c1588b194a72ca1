// Bridge: forwards traffic between two interfaces through a callback, each side with an RX ring
// (a Capture) and a TX ring (an Injector).
//
// The captures ignore outgoing packets (PACKET_IGNORE_OUTGOING), so what the bridge sends on a
// side is never captured again on that side: no forwarding loops.

import { EventEmitter } from 'node:events'

import { Capture } from './capture'
import { callNative, NetringError } from './errors'
import { Injector } from './injector'
import { native } from './native'
import {
  captureOptions,
  checkOptions,
  injectorOptions,
  interfaceName,
  iterationOptions,
  type CaptureOptions,
  type InjectorOptions,
} from './options'
import type { Packet, PacketBatch } from './packet'

/** Which way a packet is going. */
export type BridgeDirection = 'a->b' | 'b->a'

/** What the callback decides: send the packet on, drop it, or send these bytes instead. */
export type BridgeVerdict = 'forward' | 'drop' | Uint8Array

export type BridgeCallback = (packet: Packet, direction: BridgeDirection) => BridgeVerdict

export interface BridgeSideOptions {
  /** The side's RX ring. @default { profile: 'low-latency' } (1 ms block timeout) */
  capture?: Omit<CaptureOptions, 'ignoreOutgoing' | 'fanout'>
  /** The side's TX ring. */
  injector?: InjectorOptions
}

export interface BridgeOptions {
  a: string
  b: string
  /** Ring options for both sides; `sides.a` / `sides.b` override them per side. */
  capture?: BridgeSideOptions['capture']
  injector?: InjectorOptions
  sides?: { a?: BridgeSideOptions; b?: BridgeSideOptions }
  /**
   * Forward each frame with its offload metadata (captures with `offloadInfo`, injectors with
   * `offload`), so checksum-offloaded and GSO frames from hosts with default offloads arrive
   * checksummed and segmented. Off, such frames are forwarded as captured and dropped by the
   * receiver (what `ethtool -K … tx off tso off gso off` on every host used to avoid).
   * @default true
   */
  offload?: boolean
}

export interface BridgeDirectionStats {
  forwarded: number
  droppedByCallback: number
  /** Larger than the other side's slot or MTU + 18. */
  droppedTooLarge: number
  /** Captured only in part (the capture's `snapLen` is below the frame's size): a truncated
   * frame is never forwarded. A Buffer the callback returns instead is sent as it is. */
  droppedTruncated: number
  /** The other side's TX ring stayed full, or its interface refused the frame for now (ENOBUFS). */
  droppedRingFull: number
  /**
   * Refused for good, never to be retried: by the engine (bytes a callback returned that are no
   * frame, shorter than an Ethernet header, or offload metadata that does not fit them) or by
   * the kernel (a frame larger than a slot refused by sendmsg, or a queued frame refused at the
   * flush because the other side's MTU shrank). Each is also emitted as `'error'` when someone
   * listens.
   */
  droppedRejected: number
  /** Dropped by the kernel because this side's RX ring was full. */
  rxDrops: number
}

export interface BridgeRunOptions {
  signal?: AbortSignal
  /** Stop after this many turns (a turn handles what is ready on both sides). */
  iterations?: number
}

interface Side {
  capture: Capture
  injector: Injector
  direction: BridgeDirection
  /** The injector takes each frame's offload header from the capture. */
  offload: boolean
  /** The ring counters as last read (kept for stats() after close()). */
  rxDrops: number
  rejected: number
  /** droppedRejected counts here only what the engine refused before the kernel saw it. */
  stats: Omit<BridgeDirectionStats, 'rxDrops'>
}

const DEFAULT_CAPTURE: CaptureOptions = { profile: 'low-latency' }

export class Bridge extends EventEmitter<{ error: [Error]; close: [] }> implements Disposable, AsyncDisposable {
  readonly #from: { a: Side; b: Side }
  #closed = false
  /** A turn is under way (the callback runs inside it). */
  #turning = false

  private constructor(from: { a: Side; b: Side }) {
    super()
    this.#from = from
    // Refused frames are counted (droppedRejected); surface them here when someone listens.
    for (const side of [from.a, from.b]) {
      side.injector.on('error', (e) => {
        if (this.listenerCount('error') > 0) this.emit('error', e)
      })
    }
  }

  /** Opens both sides: a capture and an injector on each interface. */
  static open(options: BridgeOptions): Bridge {
    const o = checkOptions(options, 'bridge', {
      a: (v, n) => interfaceName(v, n),
      b: (v, n) => interfaceName(v, n),
      capture: (v, n) => captureOptions(v, n),
      injector: (v, n) => injectorOptions(v, n),
      sides: (v, n) => checkOptions(v, n, { a: sideOptions, b: sideOptions }),
      offload: (v, n) => captureOptions({ offloadInfo: v }, n),
    }) as unknown as BridgeOptions
    if (o.a === undefined || o.b === undefined) throw NetringError.invalidOption('bridge', 'needs both interfaces, { a, b }')
    // Each frame would go back out of the interface it came in on, to its sender (and confuse
    // the MAC tables of the switches on the way).
    if (o.a === o.b) throw NetringError.invalidOption('b', `must be another interface than a ('${o.a}')`)
    const opened: (Capture | Injector)[] = []
    const open = <T extends Capture | Injector>(make: () => T): T => {
      const x = make()
      opened.push(x)
      return x
    }
    try {
      const side = (name: 'a' | 'b'): { capture: Capture; injector: Injector } => {
        const own = o.sides?.[name]
        const offload = o.offload ?? true
        const captureOpts = { ...DEFAULT_CAPTURE, offloadInfo: offload, ...o.capture, ...own?.capture, ignoreOutgoing: true }
        return {
          capture: open(() => Capture.open(o[name], captureOpts)),
          injector: open(() => Injector.open(o[name], { offload, ...o.injector, ...own?.injector })),
        }
      }
      const a = side('a')
      const b = side('b')
      const fresh = () => ({ forwarded: 0, droppedByCallback: 0, droppedTooLarge: 0, droppedTruncated: 0, droppedRingFull: 0, droppedRejected: 0 })
      const offload = (injector: Injector) => injector.info.offload
      const counters = { rxDrops: 0, rejected: 0 }
      return new Bridge({
        a: { capture: a.capture, injector: b.injector, direction: 'a->b', offload: offload(b.injector), stats: fresh(), ...counters },
        b: { capture: b.capture, injector: a.injector, direction: 'b->a', offload: offload(a.injector), stats: fresh(), ...counters },
      })
    } catch (e) {
      for (const x of opened) x.close()
      throw e
    }
  }

  get closed(): boolean {
    return this.#closed
  }

  /**
   * Forwards until `signal` fires, `iterations` turns have run, or the bridge is closed; waits
   * on native threads, never blocking the event loop. Resolves with the stats when it stops
   * (abort included); rejects if a side fails (for example its interface is deleted).
   */
  async run(fn: BridgeCallback, options?: BridgeRunOptions): Promise<Record<BridgeDirection, BridgeDirectionStats>> {
    const { signal, iterations = Infinity } = this.#runOptions(fn, options)
    const { a, b } = this.#from
    // One wait per side, kept across turns: the side that did not wake the bridge is still
    // waited for at the next idle turn, not withdrawn and armed again (per turn, that cost a
    // signal, an abort and a native re-arm, a tenth of the JS bridge's time under TCP).
    const stop = new AbortController()
    const until = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal
    const waits = new Map<Side, Promise<void>>()
    const ready = (side: Side): Promise<void> => {
      let wait = waits.get(side)
      if (!wait) {
        wait = side.capture.readable(until).finally(() => waits.delete(side))
        waits.set(side, wait)
      }
      return wait
    }
    try {
      for (let turn = 0; turn < iterations && !this.#closed && !signal?.aborted; turn++) {
        if (this.#turn(fn) > 0) continue
        // Nothing ready on either side: wait for either.
        try {
          await Promise.race([ready(a), ready(b)])
        } catch (e) {
          if ((e as Error).name !== 'AbortError') throw e
        }
      }
    } finally {
      // Withdraws the waits still armed (each capture cancels its native wait on abort).
      stop.abort()
      await Promise.allSettled(waits.values())
    }
    return this.stats()
  }

  /**
   * Like `run`, but blocks the thread, for worker threads: stops after `iterations` turns or
   * `timeoutMs` milliseconds, whichever comes first (at least one is required).
   */
  runSync(fn: BridgeCallback, options: { iterations?: number; timeoutMs?: number }): Record<BridgeDirection, BridgeDirectionStats> {
    const { iterations = Infinity, timeoutMs = Infinity } = this.#runOptions(fn, options, ['iterations', 'timeoutMs'])
    if (iterations === Infinity && timeoutMs === Infinity) {
      throw NetringError.invalidOption('runSync', 'needs iterations or timeoutMs, or it would block forever')
    }
    const deadline = performance.now() + timeoutMs
    const fds = [this.#from.a.capture.fd, this.#from.b.capture.fd]
    for (let turn = 0; turn < iterations && !this.#closed; turn++) {
      const left = deadline - performance.now()
      if (left <= 0) break
      if (this.#turn(fn) === 0) callNative(() => native.waitAnyReadable(fds, Math.min(left, 100)))
    }
    return this.stats()
  }

  /**
   * Per direction: forwarded, dropped by the callback, too large, truncated, refused by the
   * kernel, ring full, and RX drops. After `close()` the ring counters read as they were last.
   */
  stats(): Record<BridgeDirection, BridgeDirectionStats> {
    const of = (side: Side): BridgeDirectionStats => {
      if (!side.capture.closed) side.rxDrops = side.capture.stats().drops
      if (!side.injector.closed) side.rejected = side.injector.stats().rejected
      // The kernel's refusals are the injector's own count (it opened for this bridge alone).
      return { ...side.stats, droppedRejected: side.stats.droppedRejected + side.rejected, rxDrops: side.rxDrops }
    }
    return { 'a->b': of(this.#from.a), 'b->a': of(this.#from.b) }
  }

  /**
   * Sends what was forwarded (briefly draining), closes all four rings, emits `'close'`. From
   * anywhere, the callback included: `run()` then resolves with the stats.
   */
  close(): void {
    if (this.#closed) return
    this.stats() // the ring counters, read while the rings are open
    this.#closed = true
    const { a, b } = this.#from
    for (const x of [a.capture, b.capture, a.injector, b.injector]) x.close()
    this.emit('close')
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  /** One pass over both sides; returns how many packets were handled. */
  #turn(fn: BridgeCallback): number {
    this.#turning = true
    try {
      return this.#turnSides(fn)
    } finally {
      this.#turning = false
    }
  }

  #turnSides(fn: BridgeCallback): number {
    let handled = 0
    for (const side of [this.#from.a, this.#from.b]) {
      if (this.#closed) break
      const batch = side.capture.nextBatch()
      if (batch) {
        handled += batch.length
        try {
          this.#forward(side, batch, fn)
        } finally {
          // Also when the callback threw: a batch kept would stall this side's ring.
          if (!this.#closed) batch.release()
        }
      }
    }
    return handled
  }

  #forward(side: Side, batch: PacketBatch, fn: BridgeCallback): void {
    const { injector, stats, direction, offload } = side
    let left = batch.length
    for (const packet of batch) {
      let verdict: BridgeVerdict
      try {
        verdict = fn(packet, direction)
        if (verdict !== 'forward' && verdict !== 'drop' && !(verdict instanceof Uint8Array)) {
          throw NetringError.invalidOption('verdict', "the callback must return 'forward', 'drop' or a Buffer")
        }
      } catch (e) {
        // run() rejects with it. This packet and the rest of the batch count as dropped by the
        // callback; what it forwarded before leaves now, not with some later turn.
        if (this.#closed) throw e
        stats.droppedByCallback += left
        injector.flush()
        throw e
      }
      left--
      // Closed by the callback: its answer cannot be sent any more (counted as its drop); the
      // rest of the batch was never handed to it and is not counted.
      if (this.#closed) {
        stats.droppedByCallback++
        return
      }
      if (verdict === 'drop') {
        stats.droppedByCallback++
        continue
      }
      if (verdict === 'forward' && packet.length < packet.originalLength) {
        stats.droppedTruncated++
        continue
      }
      const frame = verdict === 'forward' ? packet.data : verdict
      let queued: boolean
      try {
        if (offload) {
          // The header as captured; for rewritten bytes the engine redoes the checksums.
          const header = packet.offloadHeader()
          const modified = frame !== packet.data
          const buffer = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength)
          queued = injector._forward(buffer, header, modified) || (injector.flush(), injector._forward(buffer, header, modified))
        } else {
          queued = injector.send(frame) || (injector.flush(), injector.send(frame))
        }
      } catch (e) {
        const { code, syscall } = e as NetringError
        // Larger than the other side's slot or MTU (checked before it takes a slot).
        if (code === 'EMSGSIZE') {
          stats.droppedTooLarge++
          continue
        }
        // Refused by the engine before it took a slot (bytes that are no frame, shorter than
        // an Ethernet header, or offload metadata that does not fit them), or by the kernel at
        // sendmsg (the injector counted that one as rejected).
        if (code === 'EINVAL' && syscall === undefined) stats.droppedRejected++
        else if (syscall !== 'sendmsg') {
          // What was forwarded before leaves now, as when the callback throws.
          injector.flush()
          throw e
        }
        if (this.listenerCount('error') > 0) this.emit('error', e as Error)
        continue
      }
      if (queued) stats.forwarded++
      else stats.droppedRingFull++
    }
    injector.flush()
  }

  #runOptions(
    fn: unknown,
    options: unknown,
    known: (keyof BridgeRunOptions | 'timeoutMs')[] = ['signal', 'iterations'],
  ): BridgeRunOptions & { timeoutMs?: number } {
    if (typeof fn !== 'function') throw NetringError.invalidOption('callback', 'must be a function (packet, direction) => verdict')
    if (this.#closed) throw NetringError.of('EBADF', 'the bridge is closed')
    // A turn inside the callback would take the next batch and hand back the one the outer
    // turn is still walking: its packets would be neither forwarded nor counted.
    if (this.#turning) throw NetringError.of('EBUSY', "run() and runSync() cannot be called from inside the bridge's callback")
    return iterationOptions(options, known.includes('timeoutMs') ? 'runSync' : 'run', known)
  }
}

function sideOptions(v: unknown, name: string): void {
  checkOptions(v, name, { capture: (c, n) => captureOptions(c, n), injector: (i, n) => injectorOptions(i, n) })
}
