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
  let ticks = 0
  const timer = setInterval(() => ticks++, 10)
  t.teardown(() => clearInterval(timer))
  setTimeout(() => void veth.send(Array.from({ length: 100 }, (_, i) => frame(veth.nearMac, veth.farMac, 100, i))), 300)
  const seqs: number[] = []
  // How often the timer fired before the first packet came: a wait that blocked the thread
  // would let it fire only once the packets were there.
  let ticksBeforeFirstPacket = -1
  for await (const p of cap) {
    if (!ours(p)) continue
    if (ticksBeforeFirstPacket < 0) ticksBeforeFirstPacket = ticks
    seqs.push(seqOf(p))
    if (seqs.length === 100) break
  }
  clearInterval(timer)
  t.deepEqual(
    seqs,
    Array.from({ length: 100 }, (_, i) => i),
  )
  t.true(ticksBeforeFirstPacket >= 3, `the timer fired ${ticksBeforeFirstPacket} times while the capture waited for packets`)
})

