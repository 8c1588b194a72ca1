// `netring capture`: tcpdump's everyday job. Prints a line per packet, or writes a pcap/pcapng
// file (optionally rotated by time or size), and prints tcpdump's summary at the end.

import { join } from 'node:path'

import { Capture, type CaptureStats } from '../capture'
import { NetringError } from '../errors'
import { FanoutPool } from '../fanout-pool'
import { FilterProgram } from '../filter'
import type { FanoutMode } from '../options'
import { DIRECTIONS, type PacketBatch, type PacketInfo } from '../packet'
import { PcapWriter, type FileFormat } from '../pcap-writer'
import { readCaptureFile } from '../pcap-reader'
import { fileArgument, intOption, parseArgs, stringOption, UsageError, type OptionSpec } from './args'
import { META_FIELDS, type CaptureWorkerData, type PostedLines, type PostedPackets } from './capture-worker'
import { formatPacket, type LineOptions } from './format-packet'
import { LineMerger } from './line-merger'
import { onInterrupt, startStatusLine, statusLineShown } from './status'

export const CAPTURE_USAGE =
  'usage: netring capture -i IFACE [-c COUNT] [-w FILE] [-s SNAPLEN] [-G SECONDS | -C MB] [--format pcap|pcap-ns|pcapng]\n' +
  '                       [--fanout MODE:GROUP] [--workers N|auto] [-p] [-n] [-e] [-tttt] [EXPRESSION...]\n' +
  '       netring capture -r FILE|- [-c COUNT] [-e] [-tttt] [EXPRESSION...]'

const SPECS: Record<string, OptionSpec> = {
  '-i': { value: true, name: 'interface' },
  '-c': { value: true, name: 'count' },
  '-w': { value: true, name: 'write' },
  '-r': { value: true, name: 'read' },
  '-s': { value: true, name: 'snaplen' },
  '-G': { value: true, name: 'rotateSeconds' },
  '-C': { value: true, name: 'rotateMb' },
  '--format': { value: true, name: 'format' },
  '--fanout': { value: true, name: 'fanout' },
  '--workers': { value: true, name: 'workers' },
  '-p': { value: false, name: 'noPromiscuous' },
  '-n': { value: false, name: 'numeric' },
  '-e': { value: false, name: 'link' },
  '-tttt': { value: false, name: 'date' },
}

/** The options that only a live capture uses (`-r FILE` takes none of them). */
const LIVE_ONLY = new Set(['interface', 'write', 'snaplen', 'rotateSeconds', 'rotateMb', 'format', 'fanout', 'workers', 'noPromiscuous'])

const FANOUT_MODES: readonly FanoutMode[] = ['hash', 'lb', 'cpu', 'rollover', 'random', 'qm']
const FORMATS: readonly FileFormat[] = ['pcap', 'pcap-ns', 'pcapng']

export async function captureCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, SPECS)
  const expression = p.rest.join(' ').trim()
  const count = intOption(p, 'count', '-c', 1)
  const lines: LineOptions = { link: p.options.has('link'), date: p.options.has('date') }
  const read = stringOption(p, 'read')
  if (read !== undefined) {
    // Options of a live capture would otherwise be ignored without a word (`-r in -w out` would
    // write no file at all).
    const live = Object.entries(SPECS).find(([, spec]) => LIVE_ONLY.has(spec.name) && p.options.has(spec.name))
    if (live) throw new UsageError(`${live[0]} cannot be used with -r (it applies to a live capture)`)
    return readFile(read, count, lines, expression ? new FilterProgram(expression) : undefined)
  }
  const iface = stringOption(p, 'interface')
  if (!iface) throw new UsageError('-i IFACE is required (see `netring list`)')
  const snapLen = intOption(p, 'snaplen', '-s', 0) || undefined
  const rotateSeconds = intOption(p, 'rotateSeconds', '-G', 1)
  const rotateMb = intOption(p, 'rotateMb', '-C', 1)
  const path = stringOption(p, 'write')
  if ((rotateSeconds || rotateMb) && (path === undefined || path === '-')) throw new UsageError('-G and -C need -w FILE')
  const format = (stringOption(p, 'format') ?? 'pcapng') as FileFormat
  if (!FORMATS.includes(format)) throw new UsageError(`--format must be one of ${FORMATS.join(', ')}, got '${format}'`)
  const fanout = parseFanout(stringOption(p, 'fanout'))
  const workers = parseWorkers(stringOption(p, 'workers'))
  const declaredSnap = snapLen ?? 262144
  const banner = `netring: listening on ${iface}, link-type EN10MB (Ethernet), snapshot length ${declaredSnap} bytes${path !== undefined ? `, writing ${format} to ${path}` : ''}\n`
  const openFiles = () => (path !== undefined ? new RotatingFile(path, format, iface, declaredSnap, rotateSeconds, rotateMb) : undefined)
  if (workers !== undefined) {
    const pool = await FanoutPool.open(iface, {
      workers,
      handler: WORKER_HANDLER,
      fanout: fanout ?? { mode: 'hash' },
      capture: {
        profile: path !== undefined ? 'high-throughput' : 'default',
        promiscuous: !p.options.has('noPromiscuous'),
        ...(snapLen ? { snapLen } : {}),
        ...(expression ? { filter: expression } : {}),
      },
      workerData: { output: path !== undefined ? 'file' : 'lines', lines } satisfies CaptureWorkerData,
      onWorkerExit: 'close',
    })
    const poolFiles = await openedOrClosing(openFiles, () => pool.close())
    process.stderr.write(banner)
    return captureWithPool(pool, count, poolFiles)
  }

  const cap = Capture.open(iface, {
    profile: path !== undefined ? 'high-throughput' : 'default',
    promiscuous: !p.options.has('noPromiscuous'),
    ...(snapLen ? { snapLen } : {}),
    ...(expression ? { filter: expression } : {}),
    ...(fanout ? { fanout } : {}),
  })
  // The file is opened before "listening on" is said, as tcpdump does: a path that cannot be
  // written is the first and only thing the user reads.
  const files = await openedOrClosing(openFiles, () => cap.close())
  const abort = new AbortController()
  onInterrupt(() => abort.abort())
  process.stderr.write(banner)

  let captured = 0
  let bytes = 0
  const showStatus = statusLineShown(files === undefined)
  let stats: CaptureStats = { packets: 0, drops: 0, freezeCount: 0 }
  const stopStatus = startStatusLine(
    {
      packets: () => captured,
      bytes: () => bytes,
      drops: () => (cap.closed ? stats : (stats = cap.stats())).drops,
      fileBytes: () => files?.totalBytes(),
    },
    showStatus,
  )
  try {
    for await (const batch of cap.batches({ signal: abort.signal })) {
      const take = count === undefined ? batch.length : Math.min(batch.length, count - captured)
      // Bytes only feed the status line: no JavaScript per packet otherwise.
      if (showStatus) for (let i = 0; i < take; i++) bytes += batch.lengthAt(i)
      if (files) {
        files.writeBatch(batch, take, () => cap.stats())
      } else {
        let out = ''
        for (let i = 0; i < take; i++) out += `${formatPacket(batch.at(i)!, lines)}\n`
        process.stdout.write(out)
      }
      captured += take
      if (files?.readerGone || (count !== undefined && captured >= count)) break
    }
  } catch (e) {
    if ((e as Error).name !== 'AbortError') throw e
  } finally {
    stopStatus()
    stats = cap.closed ? stats : cap.stats()
    try {
      files?.close(stats)
    } finally {
      cap.close()
    }
  }
  await flushed(process.stdout)
  printSummary(captured, stats)
  return 0
}

/** The compiled worker handler, next to this file (dist/cli/). */
const WORKER_HANDLER = join(__dirname, 'capture-worker.js')

/** Opens the output, or closes what was opened for it (`close`) and throws the reason. */
async function openedOrClosing<T>(open: () => T, close: () => unknown): Promise<T> {
  try {
    return open()
  } catch (e) {
    await close()
    throw e
  }
}

/**
 * `--workers N`: the pool's workers read their rings and post lines or packet copies; this
 * thread is the only writer, so `-c` counts across workers and the file holds each packet once.
 */
async function captureWithPool(pool: FanoutPool, count: number | undefined, files: RotatingFile | undefined): Promise<number> {
  let captured = 0
  let bytes = 0
  let ended = false
  let finish!: () => void
  const done = new Promise<void>((resolve) => (finish = resolve))
  const end = () => {
    if (ended) return
    ended = true
    finish()
  }
  onInterrupt(end)
  pool.on('close', end)
  pool.on('error', (e) => {
    process.stderr.write(`netring: worker ${e.workerIndex ?? '?'}: ${e.message}\n`)
    end()
  })
  const stopStatus = startStatusLine(
    {
      packets: () => captured,
      bytes: () => bytes,
      drops: () => (pool.closed ? 0 : pool.stats().total.drops),
      fileBytes: () => files?.totalBytes(),
    },
    statusLineShown(files === undefined),
  )
  const merger = files ? undefined : new LineMerger(pool.workers.length, (text) => process.stdout.write(text))
  pool.on('message', (value, worker) => {
    const m = value as PostedLines | PostedPackets
    if (ended) return
    const n = m.kind === 'lines' ? m.lines.length : m.meta.length / META_FIELDS
    const take = count === undefined ? n : Math.min(n, count - captured)
    if (m.kind === 'lines') {
      merger?.add(worker.index, take === n ? m.lines : m.lines.slice(0, take), m.times)
    } else if (files) {
      writeOwned(files, m, take, () => pool.stats().total)
    }
    if (m.kind === 'packets') for (let i = 0; i < take; i++) bytes += m.meta[i * META_FIELDS]
    captured += take
    if (files?.readerGone || (count !== undefined && captured >= count)) end()
  })
  let stats: CaptureStats = { packets: 0, drops: 0, freezeCount: 0 }
  try {
    await done
  } finally {
    stopStatus()
    merger?.end()
    stats = (await pool.close()).total
    files?.close(stats)
  }
  await flushed(process.stdout)
  printSummary(captured, stats)
  return 0
}

/** Writes the first `take` packets of a worker's posted copy, then flushes: one write per batch, as on the ring path. */
function writeOwned(files: RotatingFile, m: PostedPackets, take: number, stats: () => CaptureStats): void {
  const buffer = Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength)
  files.rotateIfDue(stats)
  let at = 0
  for (let i = 0; i < take; i++) {
    const [length, sec, nsec, originalLength, pkttype] = m.meta.subarray(i * META_FIELDS, (i + 1) * META_FIELDS)
    // Only the fields PcapWriter.write reads for one packet.
    const packet = { data: buffer.subarray(at, at + length), timestamp: { sec, nsec }, originalLength, direction: DIRECTIONS[pkttype] }
    files.writePacket(packet as PacketInfo, stats)
    at += length
  }
  files.flush()
}

/** tcpdump's summary: "received by filter" counts what the kernel's filter accepted, dropped ones included. */
function printSummary(captured: number, stats: CaptureStats): void {
  process.stderr.write(
    `\n${captured} packet${captured === 1 ? '' : 's'} captured\n` +
      `${stats.packets + stats.drops} packets received by filter\n` +
      `${stats.drops} packets dropped by kernel\n`,
  )
}

function parseWorkers(v: string | undefined): number | 'auto' | undefined {
  if (v === undefined || v === 'auto') return v
  const n = Number(v)
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`--workers needs an integer of at least 1 or 'auto', got '${v}'`)
  return n
}

/** `-r FILE` (`-` for standard input, as tcpdump): prints the file's packets that `filter` accepts (run in user space). */
async function readFile(path: string, count: number | undefined, lines: LineOptions, filter: FilterProgram | undefined): Promise<number> {
  let n = 0
  const abort = new AbortController()
  onInterrupt(() => abort.abort())
  for await (const pkt of readCaptureFile(fileArgument(path))) {
    if (abort.signal.aborted || (count !== undefined && n >= count)) break
    if (filter && !filter.matches(pkt)) continue
    if (!process.stdout.write(`${formatPacket(pkt, lines)}\n`)) await drained(process.stdout)
    n++
  }
  await flushed(process.stdout)
  return 0
}

function parseFanout(v: string | undefined) {
  if (v === undefined) return undefined
  const [mode, group] = v.split(':')
  if (!FANOUT_MODES.includes(mode as FanoutMode) || !/^\d+$/.test(group ?? '')) {
    throw new UsageError(`--fanout must be MODE:GROUP with MODE one of ${FANOUT_MODES.join(', ')}, got '${v}'`)
  }
  return { mode: mode as FanoutMode, group: Number(group) }
}

/**
 * Resolves once everything written to `stream` has left the process (or the stream failed). The
 * command ends with process.exit(), which drops what a full pipe left queued: 'drain' alone is
 * not enough, since below the high-water mark a queued write emits none.
 */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    // Writes complete in order: this one's callback comes after every one before it.
    stream.write('', () => resolve())
  })
}

function drained(stream: NodeJS.WriteStream): Promise<void> {
  if (!stream.writableNeedDrain) return Promise.resolve()
  return new Promise((resolve) => {
    // Both listeners go once either fires: a long print waits thousands of times.
    const done = () => {
      stream.off('drain', done)
      stream.off('error', done)
      resolve()
    }
    stream.on('drain', done)
    stream.on('error', done)
  })
}

/** `-w FILE` with tcpdump's rotation: `-C` starts FILE1, FILE2, ...; `-G` expands strftime fields. */
class RotatingFile {
  current: PcapWriter
  /**
   * `-w -` and the reader of standard output went away (EPIPE, as when piped into `head`): the
   * capture ends quietly with its summary, as tcpdump's does, instead of failing.
   */
  readerGone = false
  #index = 0
  #openedAt = Date.now()
  #closedBytes = 0

  constructor(
    private readonly path: string,
    private readonly format: FileFormat,
    private readonly iface: string,
    private readonly snapLen: number,
    private readonly seconds: number | undefined,
    private readonly mb: number | undefined,
  ) {
    this.current = this.#open()
  }

  totalBytes(): number {
    return this.#closedBytes + this.current.bytesWritten
  }

  /** `-G`: the next file once the current one is SECONDS old (checked as packets arrive, as tcpdump does). */
  rotateIfDue(stats: () => CaptureStats): void {
    if (this.seconds !== undefined && Date.now() - this.#openedAt >= this.seconds * 1000) this.#rotate(stats)
  }

  /** The first `end` packets of a ring batch, from the ring, across as many `-C` files as they fill. */
  writeBatch(batch: PacketBatch, end: number, stats: () => CaptureStats): void {
    this.#unlessReaderGone(() => {
      this.rotateIfDue(stats)
      let next = 0
      while ((next = this.current.writeBatch(batch, { start: next, end, maxSize: this.#maxSize })) < end) this.#rotate(stats)
    })
  }

  /** One packet; `-C`: the next file first if this one is full. */
  writePacket(packet: PacketInfo, stats: () => CaptureStats): void {
    this.#unlessReaderGone(() => {
      if (this.current.size >= this.#maxSize) this.#rotate(stats)
      this.current.write(packet)
    })
  }

  flush(): void {
    this.#unlessReaderGone(() => this.current.flush())
  }

  #unlessReaderGone(write: () => void): void {
    if (this.readerGone) return
    try {
      write()
    } catch (e) {
      this.#readerWentAway(e)
    }
  }

  /** Rethrows `e` unless it is the EPIPE of standard output's reader going away. */
  #readerWentAway(e: unknown): void {
    if (this.path !== '-' || !(e instanceof NetringError) || e.code !== 'EPIPE') throw e
    this.readerGone = true
  }

  /** `-C MB`: millions of bytes, as tcpdump counts them. */
  get #maxSize(): number {
    return this.mb === undefined ? Infinity : this.mb * 1_000_000
  }

  #rotate(stats: () => CaptureStats): void {
    this.close(stats())
    this.#index++
    this.#openedAt = Date.now()
    this.current = this.#open()
  }

  close(stats: CaptureStats): void {
    // Also once the reader is gone: the writer closes even when its statistics block fails.
    try {
      this.current.close(stats)
    } catch (e) {
      this.#readerWentAway(e)
    }
    this.#closedBytes += this.current.bytesWritten
  }

  #open(): PcapWriter {
    const options = { format: this.format, interface: this.iface, snapLen: this.snapLen }
    if (this.path === '-') return PcapWriter.open(1, options)
    let name = this.seconds !== undefined && this.path.includes('%') ? strftime(this.path, new Date()) : this.path
    if (this.#index > 0 && name === this.path) name = `${this.path}${this.#index}`
    return PcapWriter.open(name, options)
  }
}

function strftime(pattern: string, d: Date): string {
  const p2 = (n: number) => String(n).padStart(2, '0')
  const fields: Record<string, string> = {
    Y: String(d.getFullYear()),
    m: p2(d.getMonth() + 1),
    d: p2(d.getDate()),
    H: p2(d.getHours()),
    M: p2(d.getMinutes()),
    S: p2(d.getSeconds()),
    s: String(Math.floor(d.getTime() / 1000)),
    '%': '%',
  }
  return pattern.replace(/%(.)/g, (m, c: string) => fields[c] ?? m)
}
