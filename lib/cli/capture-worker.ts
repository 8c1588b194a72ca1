// The worker side of `netring capture --workers N`: a FanoutPool handler. Each worker reads its
// own ring and posts what the main thread needs, because only the main thread writes output:
// printed lines with their times (formatted here, so formatting runs on every core; the main
// thread merges them in time order), or owned copies of the
// packets for the one capture file (one writer keeps the file valid and every packet in it once).

import type { Capture } from '../capture'
import type { FanoutContext } from '../fanout-worker'
import { DIRECTIONS } from '../packet'
import { formatPacket, type LineOptions } from './format-packet'

export interface CaptureWorkerData {
  output: 'lines' | 'file'
  lines: LineOptions
}

/** A batch for the file: packet bytes back to back, and per packet [length, sec, nsec, originalLength, pkttype]. */
export interface PostedPackets {
  kind: 'packets'
  bytes: Uint8Array
  meta: Float64Array
}

export interface PostedLines {
  kind: 'lines'
  lines: string[]
  /** Each packet's time in microseconds since the epoch, for the merge in time order. */
  times: Float64Array
}

export const META_FIELDS = 5

export default async function captureWorker(capture: Capture, context: FanoutContext<CaptureWorkerData>): Promise<void> {
  const { output, lines } = context.workerData
  for await (const batch of capture.batches({ signal: context.signal })) {
    if (output === 'lines') {
      const text: string[] = []
      const times = new Float64Array(batch.length)
      for (const p of batch) {
        times[text.length] = p.timestamp.sec * 1e6 + Math.floor(p.timestamp.nsec / 1000)
        text.push(formatPacket(p, lines))
      }
      context.postMessage({ kind: 'lines', lines: text, times } satisfies PostedLines, [times.buffer])
      continue
    }
    let total = 0
    for (let i = 0; i < batch.length; i++) total += batch.lengthAt(i)
    const bytes = new Uint8Array(total)
    const meta = new Float64Array(batch.length * META_FIELDS)
    let at = 0
    let i = 0
    for (const p of batch) {
      bytes.set(p.data, at)
      at += p.length
      meta.set([p.length, p.timestamp.sec, p.timestamp.nsec, p.originalLength, Math.max(0, DIRECTIONS.indexOf(p.direction))], i * META_FIELDS)
      i++
    }
    // Transferred, not cloned: the copy made above is the only one.
    context.postMessage({ kind: 'packets', bytes, meta } satisfies PostedPackets, [bytes.buffer, meta.buffer])
  }
}
