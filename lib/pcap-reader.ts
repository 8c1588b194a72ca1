// Reads capture files: pcap (either byte order, micro- or nanosecond timestamps) and pcapng
// (sections of either byte order, any if_tsresol), as OwnedPackets.

import { open, type FileHandle } from 'node:fs/promises'

import { NetringError } from './errors'
import { describe } from './numbers'
import { type Direction, OwnedPacket, type PacketStatus } from './packet'

/** Longest record accepted: larger is a corrupt length, not a packet (libpcap's limit is 256 KiB). */
const MAX_RECORD = 16 * 1024 * 1024
const CHUNK = 1 << 20

export interface CaptureFileInterface {
  name: string
  linkType: number
  snapLen: number
}

/**
 * The packets of a pcap or pcapng file, in order, as `OwnedPacket`s with their timestamps,
 * lengths and (pcapng) direction. A malformed or truncated file throws `EINVAL` naming the
 * byte offset; a missing file the error `open` gave (`ENOENT`).
 */
export async function* readCaptureFile(path: string, info?: { interfaces: CaptureFileInterface[] }): AsyncGenerator<OwnedPacket> {
  if (typeof path !== 'string' || path === '') throw NetringError.invalidOption('path', `must be a file path, got ${describe(path)}`)
  if (info !== undefined && (typeof info !== 'object' || info === null || !Array.isArray(info.interfaces))) {
    throw NetringError.invalidOption('info', 'must be { interfaces: [] } (filled with the interfaces the file describes)')
  }
  let file: FileHandle
  try {
    file = await open(path, 'r')
  } catch (e) {
    throw fsError(e as NodeJS.ErrnoException, path, 'opening')
  }
  try {
    const source = new ByteSource(file, path)
    const head = await source.need(0, 4)
    const magic = head.readUInt32LE(0)
    if (magic === 0x0a0d0d0a) yield* readPcapng(source, info?.interfaces ?? [])
    else yield* readPcap(source, info?.interfaces ?? [])
  } finally {
    await file.close()
  }
}

/** A file read in chunks, addressed by absolute offset. */
class ByteSource {
  #buf = Buffer.alloc(0)
  #start = 0 // file offset of #buf[0]
  #eof = false
  constructor(
    private readonly file: FileHandle,
    readonly path: string,
  ) {}

  /** `len` bytes at `offset`, or null at a clean end of file (nothing at `offset`). */
  async take(offset: number, len: number): Promise<Buffer | null> {
    while (offset + len > this.#start + this.#buf.length && !this.#eof) await this.#fill(offset)
    if (offset >= this.#start + this.#buf.length) return null
    if (offset + len > this.#start + this.#buf.length) {
      throw malformed(this.path, offset, `truncated: needs ${len} bytes, the file ends after ${this.#start + this.#buf.length - offset}`)
    }
    return this.#buf.subarray(offset - this.#start, offset - this.#start + len)
  }

  async need(offset: number, len: number): Promise<Buffer> {
    const b = await this.take(offset, len)
    if (!b) throw malformed(this.path, offset, 'truncated: the file ends here')
    return b
  }

  async #fill(keepFrom: number): Promise<void> {
    const keep = this.#buf.subarray(Math.max(0, keepFrom - this.#start))
    const chunk = Buffer.allocUnsafe(CHUNK)
    let bytesRead: number
    try {
      // Read on from the current position (not at an offset): the file is read once, in order,
      // so a pipe (`-r -`, /dev/stdin) reads as a file does.
      ;({ bytesRead } = await this.file.read(chunk, 0, CHUNK, null))
    } catch (e) {
      // A directory opens but does not read (EISDIR); a device may fail any read (EIO).
      throw fsError(e as NodeJS.ErrnoException, this.path, 'reading')
    }
    if (bytesRead === 0) this.#eof = true
    const start = this.#start + this.#buf.length - keep.length
    this.#buf = Buffer.concat([keep, chunk.subarray(0, bytesRead)])
    this.#start = start
  }
}

async function* readPcap(src: ByteSource, interfaces: CaptureFileInterface[]): AsyncGenerator<OwnedPacket> {
  const h = await src.need(0, 24)
  const le = h.readUInt32LE(0)
  const be = h.readUInt32BE(0)
  const little = le === 0xa1b2c3d4 || le === 0xa1b23c4d
  const magic = little ? le : be
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) {
    throw malformed(src.path, 0, `not a pcap or pcapng file (magic 0x${le.toString(16).padStart(8, '0')})`)
  }
  const nanos = magic === 0xa1b23c4d
  const u32 = (b: Buffer, at: number) => (little ? b.readUInt32LE(at) : b.readUInt32BE(at))
  const snapLen = u32(h, 16)
  interfaces.push({ name: '', linkType: u32(h, 20) & 0xffff, snapLen })
  for (let off = 24; ; ) {
    const rec = await src.take(off, 16)
    if (!rec) return
    const sec = u32(rec, 0)
    const frac = u32(rec, 4)
    const caplen = u32(rec, 8)
    const origlen = u32(rec, 12)
    if (caplen > MAX_RECORD) throw malformed(src.path, off, `record length ${caplen} is larger than any packet`)
    if (frac >= (nanos ? 1e9 : 1e6)) throw malformed(src.path, off, `sub-second timestamp ${frac} out of range`)
    const data = await src.need(off + 16, caplen)
    yield packet(data, origlen, BigInt(sec) * 1_000_000_000n + BigInt(nanos ? frac : frac * 1000), 'host')
    off += 16 + caplen
  }
}

interface Section {
  little: boolean
  interfaces: { tsUnitsPerSec: bigint; name: string }[]
}

async function* readPcapng(src: ByteSource, interfaces: CaptureFileInterface[]): AsyncGenerator<OwnedPacket> {
  let section: Section | null = null
  for (let off = 0; ; ) {
    const head = await src.take(off, 12)
    if (!head) return
    const type = head.readUInt32LE(0)
    if (type === 0x0a0d0d0a) {
      const order = head.readUInt32LE(8)
      if (order !== 0x1a2b3c4d && order !== 0x4d3c2b1a) throw malformed(src.path, off + 8, 'bad pcapng byte-order magic')
      section = { little: order === 0x1a2b3c4d, interfaces: [] }
    } else if (!section) {
      throw malformed(src.path, off, 'pcapng file does not start with a Section Header Block')
    }
    const s = section
    const u32 = (b: Buffer, at: number) => (s.little ? b.readUInt32LE(at) : b.readUInt32BE(at))
    const u16 = (b: Buffer, at: number) => (s.little ? b.readUInt16LE(at) : b.readUInt16BE(at))
    const kind = u32(head, 0)
    const len = u32(head, 4)
    if (len < 12 || len % 4 !== 0 || len > MAX_RECORD) throw malformed(src.path, off + 4, `block length ${len} is invalid`)
    const block = await src.need(off, len)
    if (u32(block, len - 4) !== len) throw malformed(src.path, off + len - 4, 'block lengths at start and end differ')
    if (kind === 1) {
      if (len < 20) throw malformed(src.path, off, 'Interface Description Block too short')
      let tsUnitsPerSec = 1_000_000n
      let name = ''
      forEachOption(block, 16, len - 4, u16, (code, value) => {
        if (code === 9 && value.length >= 1) {
          const v = value[0]
          tsUnitsPerSec = v & 0x80 ? 1n << BigInt(v & 0x7f) : 10n ** BigInt(v)
        } else if (code === 2) name = value.toString('utf8').replace(/\0+$/, '')
      })
      s.interfaces.push({ tsUnitsPerSec, name })
      interfaces.push({ name, linkType: u16(block, 8), snapLen: u32(block, 12) })
    } else if (kind === 6 || kind === 3) {
      const enhanced = kind === 6
      const dataAt = enhanced ? 28 : 12
      if (len < dataAt + 4) throw malformed(src.path, off, 'packet block too short')
      const iface = enhanced ? u32(block, 8) : 0
      const idb = s.interfaces[iface]
      if (!idb) throw malformed(src.path, off + 8, `packet for interface ${iface}, which was not described`)
      const origlen = u32(block, enhanced ? 24 : 8)
      const caplen = enhanced ? u32(block, 20) : Math.min(origlen, len - 16)
      if (dataAt + caplen > len - 4) throw malformed(src.path, off + 20, `captured length ${caplen} exceeds its block`)
      let direction: Direction = 'host'
      let ns = 0n
      if (enhanced) {
        const ticks = (BigInt(u32(block, 12)) << 32n) | BigInt(u32(block, 16))
        ns = (ticks * 1_000_000_000n) / idb.tsUnitsPerSec
        forEachOption(block, dataAt + caplen + ((4 - (caplen % 4)) % 4), len - 4, u16, (code, value) => {
          if (code === 2 && value.length === 4) {
            const flags = s.little ? value.readUInt32LE(0) : value.readUInt32BE(0)
            direction = (flags & 3) === 2 ? 'outgoing' : RECEPTION[(flags >> 2) & 7] ?? 'host'
          }
        })
      }
      yield packet(block.subarray(dataAt, dataAt + caplen), origlen, ns, direction)
    }
    off += len
  }
}

const RECEPTION: Record<number, Direction> = { 1: 'host', 2: 'multicast', 3: 'broadcast', 4: 'otherhost' }

function forEachOption(
  b: Buffer,
  from: number,
  to: number,
  u16: (b: Buffer, at: number) => number,
  fn: (code: number, value: Buffer) => void,
): void {
  for (let at = from; at + 4 <= to; ) {
    const code = u16(b, at)
    const len = u16(b, at + 2)
    if (code === 0) return
    if (at + 4 + len > to) return
    fn(code, b.subarray(at + 4, at + 4 + len))
    at += 4 + len + ((4 - (len % 4)) % 4)
  }
}

const STATUS: PacketStatus = {
  truncated: false,
  losing: false,
  vlanValid: false,
  csumValid: false,
  csumNotReady: false,
  gsoTcp: false,
  timestampSource: 'software',
  raw: 0,
}

function packet(data: Buffer, originalLength: number, timestampNs: bigint, direction: Direction): OwnedPacket {
  return new OwnedPacket({
    data,
    length: data.length,
    originalLength,
    timestampNs,
    timestamp: { sec: Number(timestampNs / 1_000_000_000n), nsec: Number(timestampNs % 1_000_000_000n) },
    direction,
    protocol: data.length >= 14 ? data.readUInt16BE(12) : 0,
    ifindex: 0,
    sourceLlAddr: data.subarray(6, 12),
    vlanTci: undefined,
    vlanTpid: undefined,
    rxhash: 0,
    status: { ...STATUS, truncated: data.length < originalLength },
  })
}

function malformed(path: string, offset: number, why: string): NetringError {
  return NetringError.of('EINVAL', `${path}: ${why} (at byte offset ${offset})`, {
    syscall: 'read',
    hint: 'the file is not a complete pcap or pcapng capture',
  })
}

function fsError(e: NodeJS.ErrnoException, path: string, doing: 'opening' | 'reading'): NetringError {
  return new NetringError(`${doing} the capture file ${path} failed: ${e.message}`, {
    code: e.code ?? 'EIO',
    errno: Math.abs(e.errno ?? 5),
    syscall: e.syscall ?? (doing === 'opening' ? 'open' : 'read'),
  })
}
