// One reader at a time on an XdpSocket, as on a Capture: two consumers would each get only some
// of the frames (taking a batch hands back the one the other holds), so a second is refused with
// EBUSY naming the first; once the first ends, the next gets every frame.

import test from 'ava'
import { NetringError, XdpSocket } from 'netring'

import { frame, sleep, vethPair } from './helpers/net'
import { fromTest, XDP_TEST_SRC } from './helpers/xdp'

const COUNT = 40
const busy = (first: RegExp) => ({ instanceOf: NetringError, code: 'EBUSY', message: first })

test("a 'packet' listener beside a for await loop, stream(), batches() or nextBatch(): refused, naming the first", async (t) => {
  const veth = vethPair(t)
  const xsk = XdpSocket.open(veth.near, { mode: 'rx' })
  t.teardown(() => xsk.close())
  const onPacket = () => {}
  xsk.on('packet', onPacket)
  const err = await t.throwsAsync(async () => {
    for await (const p of xsk) void p
  }, busy(/'packet'\/'batch' listeners is reading it/))
  t.is(err?.interface, veth.near)
  t.throws(() => xsk.stream(), busy(/listeners/))
  t.throws(() => xsk.nextBatch(), busy(/listeners/))
  t.throws(() => xsk.nextBatchBlocking(0), busy(/listeners/))
  t.throws(() => xsk.packets().next(), busy(/listeners/))
  await t.throwsAsync(xsk.batches().next(), busy(/listeners/))
  xsk.off('packet', onPacket)

  // The other way round: the loop reads, adding a listener throws and adds nothing.
  const iterator = xsk.iterate()
  const first = iterator.next()
  await sleep(20)
  t.throws(() => xsk.on('batch', () => {}), busy(/iterate\(\) \(for await\) is reading it/))
  t.is(xsk.listenerCount('batch'), 0)
  t.throws(() => xsk.nextBatch(), busy(/iterate/))
  await iterator.return()
  xsk.on('batch', () => {})
  t.is(xsk.listenerCount('batch'), 1)
  xsk.close()
  t.deepEqual(await first, { value: undefined, done: true })
})

test('two iterators: the second is refused; after the first ends the next reads every frame', async (t) => {
  const veth = vethPair(t)
  const xsk = XdpSocket.open(veth.near, { mode: 'rx' })
  t.teardown(() => xsk.close())
  const stream = xsk.stream()
  t.throws(() => xsk.packets().next(), busy(/stream\(\) is reading it/))
  stream.destroy()
  await sleep(10)

  await veth.send(Array.from({ length: COUNT }, (_, i) => frame(veth.nearMac, XDP_TEST_SRC, 64 + i, i)))
  const got: number[] = []
  for await (const p of xsk.iterate({ signal: AbortSignal.timeout(10_000) })) {
    if (fromTest(p.data)) got.push(p.data.readUInt32BE(14))
    if (got.length === COUNT) break
  }
  t.deepEqual(
    got,
    Array.from({ length: COUNT }, (_, i) => i),
  )
})
