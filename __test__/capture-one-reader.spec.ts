// One reader at a time: two consumers of one capture would each get only some of the packets
// (taking a batch hands back the one the other holds), so a second is refused with EBUSY
// naming the first; once the first ends, the next gets everything.

import test from 'ava'
import { Capture, NetringError } from 'netring'

import { collect, ours, seqOf } from './helpers/collect'
import { frame, localVethPair, sleep } from './helpers/net'

const busy = (first: RegExp) => ({ instanceOf: NetringError, code: 'EBUSY', message: first })

test("a 'packet' listener beside a for await loop: the second is refused, naming the first", async (t) => {
  const veth = localVethPair(t)
  using cap = Capture.open(veth.b, { blockTimeoutMs: 1 })
  const onPacket = () => {}
  cap.on('packet', onPacket)
  const err = await t.throwsAsync(async () => {
    for await (const p of cap) void p
  }, busy(/'packet'\/'batch' listeners is reading it/))
  t.is(err?.interface, veth.b)
  t.throws(() => cap.stream(), busy(/listeners/))
  t.throws(() => cap.nextBatch(), busy(/listeners/))
  t.throws(() => cap.packets().next(), busy(/listeners/))
  cap.off('packet', onPacket)

  // The other way round: the loop reads, adding a listener throws and adds nothing.
  const iterator = cap.iterate()
  const first = iterator.next()
  await sleep(20)
  t.throws(() => cap.on('packet', () => {}), busy(/iterate\(\) \(for await\) is reading it/))
  t.is(cap.listenerCount('packet'), 0)
  await t.throwsAsync(cap.batches().next(), busy(/iterate/))
  await iterator.return()
  // Ended: the slot is free again (its pending wait ends when the capture closes).
  cap.on('batch', () => {})
  t.is(cap.listenerCount('batch'), 1)
  cap.close()
  t.deepEqual(await first, { value: undefined, done: true })
})

test('after the first reader ends, the next one gets every packet', async (t) => {
  const veth = localVethPair(t)
  using cap = Capture.open(veth.b, { blockTimeoutMs: 1 })
  // A loop that ends (break) gives the slot back.
  const stop = new AbortController()
  const looping = (async () => {
    try {
      for await (const b of cap.batches({ signal: stop.signal })) void b
    } catch (e) {
      if ((e as Error).name !== 'AbortError') throw e
    }
  })()
  await sleep(20)
  t.throws(() => cap.on('batch', () => {}), busy(/batches\(\)/))
  stop.abort()
  await looping

  const got: number[] = []
  const onPacket = (p: import('netring').Packet) => {
    if (ours(p)) got.push(seqOf(p))
  }
  cap.on('packet', onPacket)
  const frames = Array.from({ length: 2000 }, (_, i) => frame(veth.bMac, veth.aMac, 60, i))
  const { Injector } = await import('netring')
  using tx = Injector.open(veth.a, { frameCount: 256 })
  for (const f of frames) while (!tx.send(f)) tx.drain(1000)
  t.true(tx.drain(5000))
  const deadline = Date.now() + 10_000
  while (got.length < frames.length && Date.now() < deadline) await sleep(10)
  cap.off('packet', onPacket)
  t.deepEqual(got, frames.map((_, i) => i))
  // And with the listener gone, a loop may read again.
  const more = collect(cap, 1, { timeoutMs: 2000 })
  tx.send(frame(veth.bMac, veth.aMac, 60, 99999))
  t.true(tx.drain(5000))
  t.deepEqual((await more).map((p) => seqOf(p)), [99999])
})
