// A randomized stress of the Injector over a live veth pair (in a child process, bounded in
// count and time): random sizes, bad arguments, discarded and abandoned slots, link down and up,
// MTU changes, concurrent senders. Every frame handed over must either arrive, in order, or have
// been reported to whoever handed it over. The seed is in the test's output; rerun one with
// NETRING_STRESS_SEED=<seed>.

import test from 'ava'
import type { BridgeDirectionStats } from 'netring'

import { runFixture } from './helpers/child'
import { localVethPair } from './helpers/net'

interface StressResult {
  timedOut: boolean
  unexpected: string[]
  outcome: Record<string, 'arrive' | 'reported' | 'queued'>
  arrived: Record<string, number[]>
  unownedRefused: number
  stats: { sent: number; rejected: number; withdrawn: number; pending: number }
  drops: number
}

const seeds = process.env.NETRING_STRESS_SEED ? [Number(process.env.NETRING_STRESS_SEED)] : [Date.now() % 1e9, (Date.now() * 7) % 1e9]

for (const seed of seeds) {
  test(`Injector stress, seed ${seed}: every frame arrives in order or is reported`, async (t) => {
    const veth = localVethPair(t)
    const child = await runFixture('tx-stress.mjs', [veth.a, veth.b, String(seed), '300'], { nodeArgs: ['--expose-gc'], timeoutMs: 90_000 })
    t.is(child.signal, null, child.stderr)
    t.is(child.code, 0, child.stderr)
    const r = child.result as StressResult
    t.false(r.timedOut, JSON.stringify(r.unexpected))
    t.deepEqual(r.unexpected, [])
    t.is(r.drops, 0)
    let queuedMissing = 0
    for (const [task, seqs] of Object.entries(r.arrived)) {
      const outOfOrder = seqs.findIndex((s, i) => i > 0 && s <= seqs[i - 1])
      t.is(outOfOrder, -1, `task ${task}: ${seqs[outOfOrder]} after ${seqs[outOfOrder - 1]}`)
    }
    for (const [frame, what] of Object.entries(r.outcome)) {
      const [task, seq] = frame.split(':').map(Number)
      const got = (r.arrived[task] ?? []).includes(seq)
      if (what === 'arrive') t.true(got, `${frame} resolved but never arrived`)
      if (what === 'reported') t.false(got, `${frame} was reported as failed but arrived`)
      if (what === 'queued' && !got) queuedMissing++
    }
    t.is(queuedMissing, r.unownedRefused, 'queued frames that did not arrive were all reported as refused')
    const arrived = Object.values(r.arrived).reduce((n, s) => n + s.length, 0)
    t.is(arrived, Object.keys(r.outcome).filter((f) => r.outcome[f] !== 'reported').length - r.unownedRefused)
    t.log(`sent ${r.stats.sent}, refused ${r.stats.rejected}, withdrawn ${r.stats.withdrawn}; ${arrived} arrived of ${Object.keys(r.outcome).length} handed over`)
  })
}

interface BridgeStressResult {
  timedOut: boolean
  unexpected: string[]
  sent: Record<string, 'resolved' | 'reported'>
  seen: Record<string, 'forward' | 'drop' | 'replace'>
  arrived: Record<string, number[]>
  stats: BridgeDirectionStats
}

for (const seed of seeds) {
  test(`Bridge stress, seed ${seed}: every frame is forwarded in order or counted as dropped`, async (t) => {
    const from = localVethPair(t)
    const to = localVethPair(t)
    const child = await runFixture('bridge-stress.mjs', [from.a, from.b, to.a, to.b, String(seed), '300'], { timeoutMs: 90_000 })
    t.is(child.signal, null, child.stderr)
    t.is(child.code, 0, child.stderr)
    const r = child.result as BridgeStressResult
    t.false(r.timedOut, JSON.stringify(r.unexpected))
    t.deepEqual(r.unexpected, [])
    t.is(r.stats.rxDrops, 0)
    for (const [frame, what] of Object.entries(r.sent)) {
      if (what === 'resolved') t.truthy(r.seen[frame], `${frame} was sent but never reached the bridge`)
      else t.falsy(r.seen[frame], `${frame} was reported as failed but reached the bridge`)
    }
    for (const [task, seqs] of Object.entries(r.arrived)) {
      const outOfOrder = seqs.findIndex((s, i) => i > 0 && s <= seqs[i - 1])
      t.is(outOfOrder, -1, `task ${task}: ${seqs[outOfOrder]} after ${seqs[outOfOrder - 1]}`)
      for (const seq of seqs) t.not(r.seen[`${task}:${seq}`] ?? 'drop', 'drop', `${task}:${seq} arrived though dropped`)
    }
    const s = r.stats
    const arrived = Object.values(r.arrived).reduce((n, x) => n + x.length, 0)
    t.is(Object.keys(r.seen).length, s.forwarded + s.droppedByCallback + s.droppedTooLarge + s.droppedTruncated + s.droppedRingFull, 'every packet the callback saw is counted once')
    t.is(arrived, s.forwarded - s.droppedRejected, 'every frame forwarded arrived, unless the kernel refused it')
    t.true(s.droppedTruncated > 0, 'frames over the snapLen were met')
    t.log(JSON.stringify(s))
  })
}
