// Two captures in one fanout group share the interface's traffic: together they see every
// packet, and no packet twice.

import test from 'ava'
import { Capture, type FanoutMode } from 'netring'

import { collect } from './helpers/collect'
import { udpFrame, vethPair } from './helpers/net'

let group = 0x4e00 + (process.pid % 0x100) * 2

for (const mode of ['hash', 'lb'] as FanoutMode[]) {
  test(`fanout '${mode}': two members share the traffic without duplicates`, async (t) => {
    const veth = vethPair(t)
    const fanout = { group: group++, mode }
    using a = Capture.open(veth.near, { fanout })
    using b = Capture.open(veth.near, { fanout })
    // Many flows (source ports), so a hash spreads them too.
    const sent = Array.from({ length: 400 }, (_, i) =>
      udpFrame(veth.nearMac, veth.farMac, 10_000 + (i % 64), 9000, Buffer.from(`fanout ${i}`)),
    )
    await veth.send(sent)
    const isUdp = (p: { protocol: number }) => p.protocol === 0x0800
    const [gotA, gotB] = await Promise.all([
      collect(a, Infinity, { timeoutMs: 1500, match: isUdp }),
      collect(b, Infinity, { timeoutMs: 1500, match: isUdp }),
    ])
    const payloads = (ps: { data: Buffer }[]) => ps.map((p) => p.data.subarray(42).toString())
    const all = [...payloads(gotA), ...payloads(gotB)]
    t.is(all.length, sent.length, 'every packet exactly once')
    t.is(new Set(all).size, sent.length, 'no duplicates')
    t.true(gotA.length > 0 && gotB.length > 0, `both members got traffic (${gotA.length} / ${gotB.length})`)
    if (mode === 'hash') {
      // A flow always goes to the same member.
      const flows = (ps: { data: Buffer }[]) => new Set(ps.map((p) => p.data.readUInt16BE(34)))
      const shared = [...flows(gotA)].filter((f) => flows(gotB).has(f))
      t.deepEqual(shared, [], 'no flow split between members')
    }
  })
}
