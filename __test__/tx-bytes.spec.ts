// Frames sent with the Injector arrive on the veth peer byte for byte, in order, none missing:
// counted by a Capture there and by tcpdump writing a pcap.

import test from 'ava'
import { Capture, Injector } from 'netring'

import { collect, ours, seqOf } from './helpers/collect'
import { frame, localVethPair } from './helpers/net'
import { tcpdump } from './helpers/pcap'
import { queueFrames, TRANSMIT_WAYS } from './helpers/transmit'

const sizes = [60, 64, 100, 512, 1000, 1400, 1514]

for (const how of TRANSMIT_WAYS) {
  test(`${how}: frames arrive byte-exact and in order at a Capture and at tcpdump`, async (t) => {
    const veth = localVethPair(t)
    using rx = Capture.open(veth.b)
    const pcap = await tcpdump(t, veth.b, 'ether proto 0x88b5')
    // qdiscBypass for one of them: the frames must arrive the same way.
    using tx = Injector.open(veth.a, { frameCount: 64, qdiscBypass: how === 'sendFrames' })
    t.is(tx.info.qdiscBypass, how === 'sendFrames')
    const frames = Array.from({ length: 140 }, (_, i) => frame(veth.bMac, veth.aMac, sizes[i % sizes.length], i))

    const queued = queueFrames(t, tx, frames, how)
    t.true(tx.drain(5000))
    t.is(queued, frames.length)
    t.like(tx.stats(), { sent: frames.length, rejected: 0, pending: 0 })

    const got = await collect(rx, frames.length)
    t.is(got.length, frames.length, 'the capture on the peer saw every frame')
    t.deepEqual(
      got.map((p) => seqOf(p)),
      frames.map((_, i) => i),
      'in order',
    )
    got.forEach((p, i) => t.true(p.data.equals(frames[i]), `frame ${i} byte-exact`))

    const dumped = await pcap.stop(frames.length)
    t.is(dumped.length, frames.length, `tcpdump saw every frame: ${dumped.map((d) => d.readUInt32BE(14))}`)
    dumped.forEach((d, i) => t.true(d.equals(frames[i]), `pcap frame ${i} byte-exact`))
  })
}

test('a run of slots sends the first n and gives the rest back, in ring order', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using tx = Injector.open(veth.a, { frameCount: 8 })
  const f = (seq: number) => frame(veth.bMac, veth.aMac, 70, seq)
  const run = tx.allocateRun(6, 70)!
  t.is(run.count, 6)
  for (let i = 0; i < 6; i++) f(i).copy(run.slot(i))
  run.send(4)
  t.throws(() => run.send(), { code: 'EINVAL' })
  // The two slots not sent went back: the next frames take them, right after the four.
  t.true(tx.send(f(4)))
  t.true(tx.send(f(5)))
  t.true(tx.drain(2000))
  const got = await collect(rx, 6)
  t.deepEqual(
    got.map((p) => seqOf(p)),
    [0, 1, 2, 3, 4, 5],
  )
  got.forEach((p, i) => t.true(p.data.equals(f(i))))
  t.like(tx.stats(), { sent: 6, pending: 0 })
  const whole = tx.allocateRun(100, 60)!
  t.true(whole.count >= 1 && whole.count <= 8, 'no more than the ring holds')
  whole.discard()
  t.throws(() => tx.allocateRun(1, 5000), { code: 'EMSGSIZE' })
})

test('a discarded slot is reused and nothing is sent for it', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using tx = Injector.open(veth.a, { frameCount: 4 })
  const slot = tx.allocate(100)!
  const data = slot.data
  slot.discard()
  t.is(data.byteLength, 0)
  t.throws(() => slot.send(), { code: 'EINVAL' })
  // The ring has 4 frames; allocating 4 more works only if the discarded one came back.
  const slots = [0, 1, 2, 3].map(() => tx.allocate(60))
  t.true(slots.every((s) => s !== null))
  t.is(tx.allocate(60), null, 'full')
  slots.forEach((s, i) => {
    frame(veth.bMac, veth.aMac, 60, i).copy(s!.data)
    s!.send()
  })
  t.true(tx.drain(2000))
  const got = await collect(rx, 4)
  t.deepEqual(
    got.map((p) => seqOf(p)),
    [0, 1, 2, 3],
  )
  t.deepEqual(await collect(rx, 1, { timeoutMs: 300 }), [], 'nothing for the discarded slot')
})

test('close() sends what was queued', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  const tx = Injector.open(veth.a)
  for (let i = 0; i < 10; i++) t.true(tx.send(frame(veth.bMac, veth.aMac, 80, i)))
  t.is(tx.stats().pending, 10, 'queued, not yet flushed')
  tx.close()
  tx.close()
  const got = await collect(rx, 10)
  t.deepEqual(
    got.filter(ours).map((p) => seqOf(p)),
    [...Array(10).keys()],
  )
})

test('frames leave in slot order; a slot discarded in the middle is skipped, never stalls the ring', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using tx = Injector.open(veth.a, { frameCount: 8 })
  const f = (seq: number) => frame(veth.bMac, veth.aMac, 80, seq)
  const first = tx.allocate(80)!
  const second = tx.allocate(80)!
  t.true(tx.send(f(3)))
  f(2).copy(second.data)
  second.send()
  tx.flush()
  // The kernel sends in ring order and waits at the first slot, still open.
  t.deepEqual(await collect(rx, 1, { timeoutMs: 300 }), [], 'held back by the open first slot')
  // Discarded out of order, the slot becomes a frame the kernel skips: the frames behind it go.
  first.discard()
  t.true(tx.drain(2000))
  t.true(tx.send(f(1)))
  t.true(tx.drain(2000))
  const got = await collect(rx, 3)
  t.deepEqual(
    got.map((p) => seqOf(p)),
    [2, 3, 1],
  )
  t.like(tx.stats(), { sent: 3, rejected: 0, pending: 0 })
})
