// Reading what a FanoutPool's handlers saw (the fixtures' collect handler posts it), bounded in time.

import type { FanoutPool } from 'netring'

import { sleep } from './net'

export interface Seen {
  /** Every worker index that got this payload (more than one would be a duplicate). */
  workers: number[]
  /** The UDP source port: the flow. */
  port: number
}

/** Payload → who saw it, filled from the pool's 'message' events of fixtures/fanout-collect.mjs. */
export function poolMessages(pool: FanoutPool): Map<string, Seen> {
  const seen = new Map<string, Seen>()
  pool.on('message', (value) => {
    const m = value as { index?: number; got?: [number, string][] }
    if (!Array.isArray(m?.got)) return
    for (const [port, payload] of m.got) {
      const entry = seen.get(payload)
      if (entry) entry.workers.push(m.index!)
      else seen.set(payload, { workers: [m.index!], port })
    }
  })
  return seen
}

/** Waits until `condition()` holds or `timeoutMs` passed; says which (the test asserts). */
export async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) return false
    await sleep(20)
  }
  return true
}
