// Where an XdpSocket's RX frames are: every frame that is neither lent to JavaScript nor waiting
// in the RX ring is in the fill ring, ready for the kernel (a frame left out is memory nobody
// receives into); and a batch whose frames wrap around the end of the RX frames (two runs, the
// second at lower addresses) reads byte-exact through every way of indexing it.

import test from 'ava'
import { XdpSocket } from 'netring'

import { frame, vethPair } from './helpers/net'
import { eventually, XDP_TEST_SRC } from './helpers/xdp'

const frames = (dst: Buffer, count: number, first: number) =>
  Array.from({ length: count }, (_, i) => frame(dst, XDP_TEST_SRC, 60 + ((first + i) % 7) * 200, first + i))

/** Waits until `count` packets wait in the RX ring (none taken yet). */
async function waiting(xsk: XdpSocket, count: number): Promise<boolean> {
  return eventually(() => xsk.stats().rxRing >= count)
}

for (const mode of ['rx', 'rxtx'] as const) {
  test(`${mode} (default geometry): every RX frame not lent or waiting is in the fill ring`, async (t) => {
    const veth = vethPair(t)
    using xsk = XdpSocket.open(veth.near, { mode })
    const { rxFrames, batchSize } = xsk.info
    t.is(xsk.stats().fillRing, rxFrames, 'every RX frame is posted at open')
    await veth.send(frames(veth.nearMac, batchSize + 10, 0))
    t.true(await waiting(xsk, batchSize + 10), 'the frames reached the RX ring')
    let s = xsk.stats()
    t.is(s.fillRing + s.rxRing, rxFrames, 'one frame taken from the fill ring per packet')
    const batch = xsk.nextBatch()!
    t.is(batch.length, batchSize)
    s = xsk.stats()
    t.is(s.fillRing + s.rxRing + batch.length, rxFrames, 'a lent frame is not posted')
    batch.release()
    t.is(xsk.stats().fillRing, rxFrames - 10, 'released frames go back to the fill ring at once')
    while (xsk.nextBatch()) {
      // take the rest
    }
    s = xsk.stats()
    t.is(s.fillRing, rxFrames, 'all RX frames posted again')
    t.like(s, { rxRing: 0, rxFillRingEmptyDescs: 0, rxDropped: 0 })
  })
}

test('a batch that wraps around the end of the RX frames reads byte-exact', async (t) => {
  const veth = vethPair(t)
  using xsk = XdpSocket.open(veth.near, { mode: 'rx', frameCount: 64, ringSize: 64, batchSize: 64 })
  const first = frames(veth.nearMac, 40, 0)
  await veth.send(first)
  t.true(await waiting(xsk, 40))
  const a = xsk.nextBatch()!
  t.is(a.length, 40)
  t.is(a.runs.length, 1)
  a.release()
  // These land in frames 40..63 and then 0..15.
  const second = frames(veth.nearMac, 40, 40)
  await veth.send(second)
  t.true(await waiting(xsk, 40))
  const b = xsk.nextBatch()!
  t.is(b.length, 40)
  t.deepEqual(
    b.runs.map((r) => r.byteLength),
    [24 * 2048, 16 * 2048],
    'two runs: the end of the RX frames, then their start',
  )
  for (let i = 0; i < b.length; i++) {
    const run = b.runs[b.runAt(i)]
    const indexed = Buffer.from(run.buffer, run.byteOffset + b.offsetAt(i), b.lengthAt(i))
    t.true(indexed.equals(second[i]), `packet ${i} through runs/offsetAt/lengthAt`)
    t.true(b.dataAt(i).equals(second[i]), `packet ${i} through dataAt`)
    t.true(b.at(i)!.data.equals(second[i]), `packet ${i} through at()`)
  }
  b.release()
})

test('stats count the batches handed out and the waits for packets', async (t) => {
  const veth = vethPair(t)
  using xsk = XdpSocket.open(veth.near, { mode: 'rx' })
  t.like(xsk.stats(), { batches: 0, waits: 0, received: 0 })
  t.is(xsk.nextBatchBlocking(30), null, 'nothing was sent')
  const slept = xsk.stats().waits
  t.true(slept >= 1, 'the blocking read slept')
  await veth.send(frames(veth.nearMac, 10, 0))
  t.true(await waiting(xsk, 10))
  t.is(xsk.nextBatch()!.length, 10)
  t.like(xsk.stats(), { batches: 1, received: 10, waits: slept })
  const readable = xsk.readable()
  t.is(xsk.stats().waits, slept + 1, 'an armed wait for readability counts too')
  await veth.send(frames(veth.nearMac, 1, 10))
  await readable
  t.is(xsk.nextBatchBlocking(5000)!.length, 1)
  t.is(xsk.stats().batches, 2)
})
