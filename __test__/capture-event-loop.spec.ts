// Waiting for packets never blocks the event loop. Alone in its file (ava runs each file in its
// own process) so that no other test's synchronous work shows up as a late timer here.

import test from 'ava'
import { Capture } from 'netring'

import { ours, seqOf } from './helpers/collect'
import { frame, vethPair } from './helpers/net'

test('for await yields every packet in order and never blocks the event loop', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near)
  // A 10 ms timer must keep firing while the capture waits for packets.
  const gaps: number[] = []
  let last = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    gaps.push(now - last)
    last = now
  }, 10)
  t.teardown(() => clearInterval(timer))
  setTimeout(() => void veth.send(Array.from({ length: 100 }, (_, i) => frame(veth.nearMac, veth.farMac, 100, i))), 300)
  const seqs: number[] = []
  for await (const p of cap) {
    if (ours(p)) seqs.push(seqOf(p))
    if (seqs.length === 100) break
  }
  clearInterval(timer)
  t.deepEqual(
    seqs,
    Array.from({ length: 100 }, (_, i) => i),
  )
  t.true(gaps.length >= 20, `the timer fired ${gaps.length} times: ${gaps.map((g) => g.toFixed(0))}`)
  t.true(Math.max(...gaps) < 150, `the longest timer gap was ${Math.max(...gaps).toFixed(1)} ms`)
})

