// Capture: an AF_PACKET TPACKET_V3 receive ring on one interface.
//
// The ways of reading it (nextBatch(), batches(), for await, events, stream(), packets()) are
// BatchReader's, shared with XdpSocket; this file supplies the ring's native calls.

import type { Readable } from 'node:stream'

import { BatchReader, type StreamOptions } from './batch-reader'
import { callNative, callTakingBack } from './errors'
import { native, type Binding } from './native'
import { captureOptions, filterOption, interfaceName, isObject, readOnce, type CaptureOptions, type Profile } from './options'
import { OwnedPacket, type Packet, PacketBatch } from './packet'

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

export type { BatchesOptions, IterateOptions, PacketsOptions, StreamOptions } from './batch-reader'

export class Capture extends BatchReader<PacketBatch, Packet> implements Disposable, AsyncDisposable {
  readonly #native: Binding.NativeCapture
  readonly interface: string
  #batch: PacketBatch | null = null
  protected override readonly readerNoun = 'capture'
  protected override readonly busyHintMore = ', or open a second capture in the same fanout group'

  private constructor(iface: string, nativeCapture: Binding.NativeCapture) {
    super()
    this.interface = iface
    this.#native = nativeCapture
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
    return callNative(() => this.#native.fd)
  }

  get closed(): boolean {
    return callNative(() => this.#native.closed)
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
    const checked = filterOption(readOnce(filter))
    this.releaseHeld()
    callTakingBack(() => this.#native.setFilter(checked), this, this.closedItself)
  }

  /** @see BatchReader.stream; `batches: true` pushes owned batches (`batch.copy()`). */
  override stream(options?: StreamOptions): Readable {
    return super.stream(options)
  }

  protected nativeNext(): PacketBatch | null {
    return this.#adopt(callTakingBack(() => this.#native.nextBatch(), this, this.closedItself))
  }

  protected nativeNextBlocking(timeoutMs: number | undefined): PacketBatch | null {
    return this.#adopt(callTakingBack(() => this.#native.nextBatchBlocking(timeoutMs), this, this.closedItself))
  }

  protected waitNative(): Promise<number> {
    return callTakingBack(() => this.#native.waitReadable(), this, this.closedItself)
  }

  protected cancelNative(): void {
    this.#native.cancelWait()
  }

  protected own(packet: Packet): OwnedPacket {
    return new OwnedPacket(packet)
  }

  protected override ownBatch(batch: PacketBatch): PacketBatch {
    return batch.copy()
  }

  /**
   * Releases the held batch (its Buffers are detached), ends every pending iteration, closes the
   * socket and emits `'close'`. Idempotent.
   */
  close(): void {
    if (this.closeFinished) return
    // A block Node cannot detach (marked untransferable) stays attached: the socket closes
    // either way, so the kernel writes no more into it.
    callNative(() => this.#native.close())
    this.finishClose()
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  #adopt(raw: { block: ArrayBuffer; table: Uint32Array } | null): PacketBatch | null {
    if (!raw) return null
    // No markAsUntransferable here: on Node >= 22 it sets a V8 detach key, which makes every
    // release refuse (the capture closes). A transferred block is caught natively too.
    this.#batch = new PacketBatch(raw, (batch) => {
      if (batch === this.#batch) {
        // Released natively first: a release that fails closed the capture, and
        // callTakingBack's close marks the batch released.
        callTakingBack(() => this.#native.release(), this, this.closedItself)
        this.forgetBatch()
      }
    }, this.interface)
    return this.#batch
  }

  protected forgetBatch(): void {
    this.#batch?.markReleased()
    this.#batch = null
  }

  protected releaseHeld(): void {
    if (this.#batch) this.#batch.release()
  }
}
