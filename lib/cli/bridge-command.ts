// `netring bridge A B [EXPRESSION]`: forwards between two interfaces; the expression is the
// capture filter of both sides, so what it rejects never leaves the kernel.

import { Bridge } from '../bridge'
import { parseArgs, UsageError } from './args'
import { onInterrupt } from './status'

export const BRIDGE_USAGE = 'usage: netring bridge A B [EXPRESSION...]'

export async function bridgeCommand(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {})
  const [a, b, ...rest] = p.rest
  if (!a || !b) throw new UsageError('give the two interfaces to bridge')
  const expression = rest.join(' ').trim()
  const abort = new AbortController()
  onInterrupt(() => abort.abort())
  await using bridge = Bridge.open({ a, b, ...(expression ? { capture: { filter: expression } } : {}) })
  process.stderr.write(`netring: bridging ${a} <-> ${b}${expression ? ` for '${expression}'` : ''}\n`)
  const stats = await bridge.run(() => 'forward', { signal: abort.signal }).catch((e: Error) => {
    if (e.name === 'AbortError') return bridge.stats()
    throw e
  })
  for (const [dir, s] of Object.entries(stats)) {
    process.stderr.write(`${dir}: ${s.forwarded} forwarded, ${s.droppedTooLarge + s.droppedRingFull} dropped, ${s.rxDrops} dropped by kernel\n`)
  }
  return 0
}
