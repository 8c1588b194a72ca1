// Capture files (pcap and pcapng) that tcpdump, tshark and Wireshark read. The format is
// written by the engine: whole batches straight from the ring with writev, single packets
// copied in.

import { Writable } from 'node:stream'

import { callNative, NetringError } from './errors'
import { native, type Binding } from './native'
import { describe, integer } from './numbers'
import { DIRECTIONS, Packet, PacketBatch, type PacketInfo } from './packet'

/** `'pcap'` (microseconds), `'pcap-ns'` (nanoseconds) or `'pcapng'` (nanoseconds, direction, statistics). */
export type FileFormat = 'pcap' | 'pcap-ns' | 'pcapng'

export interface PcapWriterOptions {
  /** @default 'pcapng' */
  format?: FileFormat
  /** The interface name written in pcapng's Interface Description Block. @default '' */
  interface?: string
  /** The snap length the file declares. @default 262144 */
  snapLen?: number
}

/** The kernel's counts written at close (pcapng's Interface Statistics Block). */
export interface FileStats {
  packets: number
  drops: number
}

const FORMATS: readonly FileFormat[] = ['pcap', 'pcap-ns', 'pcapng']

/**
 * Writes a capture file. `write()` takes a `PacketBatch` (written whole from the ring, in Rust,
 * no JavaScript per packet), a `Packet` or an `OwnedPacket` (copied in at once, so a ring view
 * never waits for I/O). Everything is on its way to the file when `flush()` or `close()`
 * returns, and every batch as soon as it is written. A failing write (a full disk: `ENOSPC`)
 * throws a `NetringError`.
 */
export class PcapWriter implements Disposable {
  readonly #native: Binding.NativePcapWriter

  private constructor(n: Binding.NativePcapWriter) {
    this.#native = n
  }

  /** Creates (or truncates) `target`, a path, or writes to a copy of descriptor `target` (1: stdout). */
  static open(target: string | number, options: PcapWriterOptions = {}): PcapWriter {
    const o = writerOptions(options)
    if (typeof target === 'number') {
      // Checked here: the binding's i32 would turn NaN, Infinity and 2**53 into 0 and 1.5 into 1.
      const fd = integer(target, 'fd', 0, 2 ** 31 - 1)
      return new PcapWriter(callNative(() => native.NativePcapWriter.fromFd(fd, o)))
    }
    if (typeof target !== 'string' || target === '') throw NetringError.invalidOption('path', 'must be a file path or a descriptor')
    return new PcapWriter(callNative(() => native.NativePcapWriter.create(target, o)))
  }

  /** Bytes written to the file so far. */
  get bytesWritten(): number {
    return this.#native.bytesWritten
  }

  /** The file's size once what is buffered is written (what `-C` rotation compares). */
  get size(): number {
    return this.#native.size
  }

  /** Packets written (or buffered) so far. */
  get packetsWritten(): number {
    return this.#native.packetsWritten
  }

  /** Writes a batch whole, or one packet (copied). */
  write(item: PacketBatch | PacketInfo): void {
    if (item instanceof PacketBatch) {
      this.writeBatch(item)
      return
    }
    if (typeof item !== 'object' || item === null) {
      throw NetringError.invalidOption('item', `must be a PacketBatch or a packet, got ${describe(item)}`)
    }
    // Read once each (a lent packet reads its ring header), then checked: the binding's u32
    // would wrap -1 and 2**40, and make NaN 0, into a record that says something else.
    const pkttype = Math.max(0, DIRECTIONS.indexOf(item.direction))
    const { data, timestamp, originalLength } = item
    if (!(data instanceof Uint8Array)) throw NetringError.invalidOption('data', `must be a Buffer or Uint8Array, got ${describe(data)}`)
    if (typeof timestamp !== 'object' || timestamp === null) {
      throw NetringError.invalidOption('timestamp', `must be { sec, nsec }, got ${describe(timestamp)}`)
    }
    const sec = integer(timestamp.sec, 'timestamp.sec')
    const nsec = integer(timestamp.nsec, 'timestamp.nsec', 0, 999_999_999)
    const wireLength = integer(originalLength, 'originalLength')
    callNative(() => this.#native.writePacket(data, sec, nsec, wireLength, pkttype))
  }

  /**
   * Writes packets `start` to `end` (exclusive) of a batch, straight from the ring, and returns
   * the index of the first packet not written: with `maxSize`, it stops before a packet once
   * the file holds that many bytes (tcpdump's `-C`: a file passes it by one packet at most).
   */
  writeBatch(batch: PacketBatch, { start = 0, end = batch.length, maxSize }: { start?: number; end?: number; maxSize?: number } = {}): number {
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > batch.length) {
      throw NetringError.invalidOption('start', `start and end must be packet indexes with start <= end <= ${batch.length}, got ${start} and ${end}`)
    }
    if (maxSize !== undefined && !(maxSize >= 0)) throw NetringError.invalidOption('maxSize', `must be a number of bytes, got ${String(maxSize)}`)
    const table = batch.table
    return start + callNative(() => this.#native.writeBlock(batch.bytes, table, start, end, maxSize))
  }

  /** Writes what is buffered. */
  flush(): void {
    callNative(() => this.#native.flush())
  }

  /** Writes the kernel's counts (pcapng) and everything buffered, and closes the file. Idempotent. */
  close(stats?: FileStats): void {
    if (stats !== undefined && (typeof stats !== 'object' || stats === null)) {
      throw NetringError.invalidOption('stats', `must be { packets, drops }, got ${describe(stats)}`)
    }
    const packets = stats && integer(stats.packets, 'stats.packets', 0, Number.MAX_SAFE_INTEGER)
    const drops = stats && integer(stats.drops, 'stats.drops', 0, Number.MAX_SAFE_INTEGER)
    callNative(() => this.#native.close(packets, drops))
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /**
   * A Writable (object mode) for `pipeline()`: batches, packets or owned packets in; closes the
   * file when the stream ends, with `stats()` (e.g. `() => cap.stats()`) as the kernel's counts.
   */
  writable(options: { stats?: () => FileStats } = {}): Writable {
    return new PcapWritable({
      objectMode: true,
      highWaterMark: 64,
      write: (item: PacketBatch | PacketInfo, _encoding, callback) => {
        try {
          this.write(item)
          callback()
        } catch (e) {
          callback(e as Error)
        }
      },
      final: (callback) => {
        try {
          this.close(options.stats?.())
          callback()
        } catch (e) {
          callback(e as Error)
        }
      },
    })
  }
}

/**
 * The writer's stream. Its writes are synchronous, so an item goes to the file within the
 * `write()` call, unless the stream buffers it (corked, or queued behind another write): a
 * lent batch or packet it buffers is copied first, since its batch may go back to the kernel
 * before the stream gets to it.
 */
class PcapWritable extends Writable {
  override write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
    if (this.writableCorked > 0 || this.writableLength > 0) chunk = ownedItem(chunk)
    return (super.write as (...args: unknown[]) => boolean)(chunk, encoding, callback)
  }
}

/** An item that stays readable after its batch is released (a copy of a lent one). */
function ownedItem(item: unknown): unknown {
  if (item instanceof PacketBatch) return item.lent ? item.copy() : item
  return item instanceof Packet ? item.copy() : item
}

function writerOptions(options: PcapWriterOptions): Binding.NativePcapWriterOptions {
  if (typeof options !== 'object' || options === null) throw NetringError.invalidOption('options', 'must be an object')
  for (const key of Object.keys(options)) {
    if (!['format', 'interface', 'snapLen'].includes(key)) {
      throw NetringError.invalidOption(key, 'unknown option (known: format, interface, snapLen)')
    }
  }
  const format = options.format ?? 'pcapng'
  if (!FORMATS.includes(format)) throw NetringError.invalidOption('format', `must be one of ${FORMATS.join(', ')}, got ${String(format)}`)
  const snapLen = options.snapLen ?? 262144
  if (!Number.isInteger(snapLen) || snapLen < 1 || snapLen > 0xffffffff) {
    throw NetringError.invalidOption('snapLen', `must be an integer from 1, got ${String(snapLen)}`)
  }
  const iface = options.interface ?? ''
  if (typeof iface !== 'string') throw NetringError.invalidOption('interface', 'must be a string')
  return { format, interface: iface, snapLen }
}
