// Frames of every kind arrive byte-exact through an XdpSocket in both attach modes, and frames
// sent through one arrive byte-exact and in order at a Capture on the peer.

import test from 'ava'
import { Capture, XdpSocket } from 'netring'

import { collect } from './helpers/collect'
import { localVethPair, vethPair } from './helpers/net'
import { queueFrames, TRANSMIT_WAYS } from './helpers/transmit'
import { collectXdp, fromTest, mixedFrames, XDP_TEST_SRC } from './helpers/xdp'

for (const attach of ['driver', 'skb'] as const) {
  test(`RX (${attach} mode): frames of every kind arrive byte-exact and in order`, async (t) => {
    const veth = vethPair(t)
    using xsk = XdpSocket.open(veth.near, { attach, mode: 'rx' })
    t.like(xsk.info, { attach, zeroCopy: false, queue: 0, mode: 'rx' })
    t.true(xsk.info.programId > 0)
    const frames = mixedFrames(veth.nearMac, 150)
    await veth.send(frames)
    const got = await collectXdp(xsk, frames.length)
    t.is(got.length, frames.length, 'every frame arrived')
    got.forEach((p, i) => {
      t.true(p.data.equals(frames[i]), `frame ${i} (${frames[i].length} bytes) byte-exact`)
      t.is(p.length, frames[i].length)
      t.is(p.queue, 0)
    })
    const stats = xsk.stats()
    t.true(stats.received >= frames.length)
    t.like(stats, { rxDropped: 0, rxInvalidDescs: 0, rxRingFull: 0 })
  })
}

for (const how of TRANSMIT_WAYS) {
  test(`TX ${how}: frames arrive byte-exact and in order at a Capture on the peer`, async (t) => {
    const veth = localVethPair(t)
    using rx = Capture.open(veth.b)
    using xsk = XdpSocket.open(veth.a, { mode: 'tx', frameCount: 64, ringSize: 64 })
    t.is(xsk.info.attach, undefined, 'a TX-only socket attaches no program')
    const frames = mixedFrames(veth.bMac, 140)
    t.is(queueFrames(t, xsk, frames, how), frames.length)
    t.true(xsk.drain(5000))
    t.like(xsk.stats(), { sent: frames.length, pending: 0, txInvalidDescs: 0 })
    const got = await collect(rx, frames.length, { match: (p) => fromTest(p.data) })
    t.is(got.length, frames.length, 'the capture on the peer saw every frame')
    got.forEach((p, i) => t.true(p.data.equals(frames[i]), `frame ${i} byte-exact`))
    t.true(XDP_TEST_SRC.equals(got[0].data.subarray(6, 12)))
  })
}
