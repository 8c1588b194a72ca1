// `netring replay`: sends a capture file's frames out of an interface through the Injector, at
// the file's own pace (default, like tcpreplay), at a multiple of it, at a fixed rate, or as
// fast as the ring takes them.

import { setTimeout as sleep } from 'node:timers/promises'

import { NetringError } from '../errors'
import { Injector } from '../injector'
import { readCaptureFile } from '../pcap-reader'
import { fileArgument, intOption, numberOption, parseArgs, stringOption, UsageError, type OptionSpec } from './args'
import { onInterrupt, startStatusLine, statusLineShown } from './status'

export const REPLAY_USAGE = 'usage: netring replay -i IFACE FILE|- [--pps N | --speed X | --top] [--loop N]'

const SPECS: Record<string, OptionSpec> = {
  '-i': { value: true, name: 'interface' },
  '--pps': { value: true, name: 'pps' },
  '--speed': { value: true, name: 'speed' },
  '--top': { value: false, name: 'top' },
  '--loop': { value: true, name: 'loop' },
}

/** Sleep only when this far ahead of schedule: timers are not finer than a millisecond. */
const AHEAD_NS = 1_000_000n

/** Longest single timer Node takes (a longer one fires after 1 ms, with a warning). */
const MAX_TIMER_MS = 2 ** 31 - 1

/** Sleeps until `due` (hrtime ns) in timers Node accepts; false when interrupted first. */
async function waitUntil(due: bigint, signal: AbortSignal): Promise<boolean> {
  for (let ahead = due - process.hrtime.bigint(); ahead > AHEAD_NS; ahead = due - process.hrtime.bigint()) {
    const ms = Number(ahead / 1_000_000n)
    try {
      await sleep(Math.min(ms, MAX_TIMER_MS), undefined, { signal })
    } catch (e) {
      if ((e as Error).name === 'AbortError') return false
      throw e
    }
  }
  return !signal.aborted
}

export async function replayCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, SPECS)
  const iface = stringOption(p, 'interface')
  if (!iface) throw new UsageError('-i IFACE is required')
  if (p.rest.length !== 1) throw new UsageError('give exactly one FILE to replay')
  const file = p.rest[0]
  const pps = numberOption(p, 'pps', '--pps')
  const speed = numberOption(p, 'speed', '--speed')
  // A rate so small that a frame's time overflows to Infinity cannot be scheduled.
  if (pps !== undefined && !Number.isFinite(1e9 / pps)) throw new UsageError(`--pps is too small to schedule a frame, got '${pps}'`)
  if (speed !== undefined && !Number.isFinite(1 / speed)) throw new UsageError(`--speed is too small to schedule a frame, got '${speed}'`)
  const top = p.options.has('top')
  if ([pps, speed, top || undefined].filter((v) => v !== undefined).length > 1) {
    throw new UsageError('choose one of --pps, --speed and --top')
  }
  const loops = intOption(p, 'loop', '--loop', 1) ?? 1
  if (file === '-' && loops > 1) throw new UsageError('--loop needs a FILE: standard input (-) can be read only once')

  const tx = Injector.open(iface, { frameCount: 4096 })
  const abort = new AbortController()
  onInterrupt(() => abort.abort())
  let sent = 0
  let bytes = 0
  let failed = 0
  const stopStatus = startStatusLine({ packets: () => sent, bytes: () => bytes, drops: () => failed, fileBytes: () => undefined }, statusLineShown(false))
  const start = process.hrtime.bigint()
  let scheduled = 0 // packets sent under --pps
  try {
    for (let loop = 0; loop < loops && !abort.signal.aborted; loop++) {
      let first: bigint | undefined
      const loopStart = process.hrtime.bigint()
      for await (const pkt of readCaptureFile(fileArgument(file))) {
        if (abort.signal.aborted) break
        if (!top) {
          first ??= pkt.timestampNs
          const due =
            pps !== undefined
              ? start + BigInt(Math.round((scheduled++ * 1e9) / pps))
              : loopStart + BigInt(Math.round(Number(pkt.timestampNs - first) / (speed ?? 1)))
          const ahead = due - process.hrtime.bigint()
          if (ahead > AHEAD_NS) {
            tx.flush()
            if (!(await waitUntil(due, abort.signal))) break
          }
        }
        try {
          if (!tx.send(pkt.data)) {
            tx.flush()
            await tx.sendAsync(pkt.data)
          }
          sent++
          bytes += pkt.length
        } catch (e) {
          // A frame the interface cannot carry (longer than its MTU) is skipped and counted,
          // as tcpreplay does.
          if (!(e instanceof NetringError) || e.code !== 'EMSGSIZE') throw e
          failed++
        }
        if (sent % 64 === 0) tx.flush()
      }
    }
    tx.flush()
    await tx.drained()
  } finally {
    stopStatus()
    tx.close()
  }
  const secs = Number(process.hrtime.bigint() - start) / 1e9
  process.stderr.write(
    `Actual: ${sent} packets (${bytes} bytes) sent in ${secs.toFixed(2)} seconds\n` +
      `Rated: ${(bytes / secs).toFixed(1)} Bps, ${((bytes * 8) / secs / 1e6).toFixed(2)} Mbps, ${(sent / secs).toFixed(2)} pps\n` +
      `Failed packets: ${failed}\n`,
  )
  return 0
}
