// A seeded random walk over the public Capture API on live traffic (fixtures/stress.cjs):
// open, batches, release, close, abort, iterators, events, streams, transfer, gc, async
// consumers, workers terminated while blocked. Each seed runs in a child process, bounded in
// steps and time; the child must exit cleanly (no signal, no hang) and every error it met must
// have been a typed NetringError or an AbortError. A failing seed is printed to reproduce it:
// STRESS_SEED=<seed> node --expose-gc __test__/fixtures/stress.cjs

import test from 'ava'

import { lastJson, runNode } from './helpers/child'

const script = new URL('./fixtures/stress.cjs', import.meta.url).pathname
const seeds = [1, 2, 3].map((i) => (Date.now() + i * 7919) % 1e9)

for (const [i, seed] of seeds.entries()) {
  test.serial(`random public calls over live traffic, run ${i + 1}`, async (t) => {
    const r = await runNode(`require(${JSON.stringify(script)})`, {
      env: { STRESS_SEED: String(seed), STRESS_STEPS: '300' },
      timeoutMs: 90_000,
    })
    t.is(r.signal, null, `seed ${seed}: ${r.stderr}`)
    t.false(r.timedOut, `seed ${seed} hung`)
    t.is(r.code, 0, `seed ${seed}: ${r.stderr}`)
    const result = lastJson<{ seed: number; done: Record<string, number>; unexpected: string[] }>(r)
    t.deepEqual(result.unexpected, [], `seed ${seed}`)
    t.true(Object.values(result.done).reduce((a, b) => a + b, 0) > 50, `seed ${seed} ran: ${JSON.stringify(result.done)}`)
  })
}
