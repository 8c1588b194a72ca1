// `netring replay`: sends a capture file's frames out of an interface through the Injector, at
// the file's own pace (default, like tcpreplay), at a multiple of it, at a fixed rate, or as
// fast as the ring takes them.

import { setTimeout as sleep } from 'node:timers/promises'

import { NetringError } from '../errors'
import { Injector } from '../injector'
import { readCaptureFile } from '../pcap-reader'
import { intOption, numberOption, parseArgs, stringOption, UsageError, type OptionSpec } from './args'
import { onInterrupt, startStatusLine, statusLineShown } from './status'

export const REPLAY_USAGE = 'usage: netring replay -i IFACE FILE [--pps N | --speed X | --top] [--loop N]'

const SPECS: Record<string, OptionSpec> = {
  '-i': { value: true, name: 'interface' },
  '--pps': { value: true, name: 'pps' },
  '--speed': { value: true, name: 'speed' },
  '--top': { value: false, name: 'top' },
  '--loop': { value: true, name: 'loop' },
}

/** Sleep only when this far ahead of schedule: timers are not finer than a millisecond. */
const AHEAD_NS = 1_000_000n

export async function replayCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, SPECS)
  const iface = stringOption(p, 'interface')
  if (!iface) throw new UsageError('-i IFACE is required')
  if (p.rest.length !== 1) throw new UsageError('give exactly one FILE to replay')
  const file = p.rest[0]
  const pps = numberOption(p, 'pps', '--pps')
  const speed = numberOption(p, 'speed', '--speed')
  const top = p.options.has('top')
  if ([pps, speed, top || undefined].filter((v) => v !== undefined).length > 1) {
    throw new UsageError('choose one of --pps, --speed and --top')
  }
  const loops = intOption(p, 'loop', '--loop', 1) ?? 1

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
      for await (const pkt of readCaptureFile(file)) {
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
            await sleep(Number(ahead / 1_000_000n))
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
