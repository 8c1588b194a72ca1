// sendAsync under contention: waiters are served in call order, and a loop of awaited sends
// gives timers and I/O their turn.

import test from 'ava'
import { Capture, Injector } from 'netring'

import { collect, seqOf } from './helpers/collect'
import { frame, localVethPair } from './helpers/net'

test('5,000 sendAsync calls at once through a 16-frame ring arrive in call order', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b, { profile: 'high-throughput' })
  using tx = Injector.open(veth.a, { frameCount: 16 })
  const total = 5000
  const received = collect(rx, total, { timeoutMs: 30_000 })
  await Promise.all(Array.from({ length: total }, (_, i) => tx.sendAsync(frame(veth.bMac, veth.aMac, 64, i))))
  await tx.drained()
  const seqs = (await received).map((p) => seqOf(p))
  t.is(seqs.length, total)
  const firstOutOfOrder = seqs.findIndex((s, i) => s !== i)
  t.is(firstOutOfOrder, -1, `frame ${seqs[firstOutOfOrder]} arrived at position ${firstOutOfOrder}`)
  t.like(tx.stats(), { sent: total, pending: 0 })
})

test('a `while (running) await sendAsync()` loop lets a timer stop it', async (t) => {
  const veth = localVethPair(t)
  using tx = Injector.open(veth.a, { frameCount: 256 })
  const f = frame(veth.bMac, veth.aMac, 60, 0)
  let running = true
  setTimeout(() => (running = false), 50)
  // Bounded: if the timer never got its turn the loop ends here and the test fails.
  const bound = 300_000
  let sent = 0
  while (running && sent < bound) {
    await tx.sendAsync(f)
    sent++
  }
  t.false(running, `the timer fired (the loop stopped after ${sent} frames)`)
  await tx.drained()
})
