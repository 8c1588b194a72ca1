// A capture holds only what arrived on its interface and what its filter accepts: the socket is
// set up completely before it is bound, so nothing foreign slips in, not even at the start.

import test from 'ava'
import { Capture, type BpfInstruction } from 'netring'

import { collect } from './helpers/collect'
import { frame, tcpdumpDd, udpFrame, vethPair } from './helpers/net'

test('a capture on one interface never holds a packet from another', async (t) => {
  const x = vethPair(t)
  const y = vethPair(t)
  using cap = Capture.open(x.near)
  const onX = Array.from({ length: 50 }, (_, i) => frame(x.nearMac, x.farMac, 80, i))
  const onY = Array.from({ length: 50 }, (_, i) => frame(y.nearMac, y.farMac, 80, 1000 + i))
  await Promise.all([x.send(onX), y.send(onY)])
  // Everything that arrived, ours or not: wait a while beyond the last expected packet.
  const got = await collect(cap, Infinity, { timeoutMs: 1500, match: () => true })
  t.true(got.length >= onX.length)
  t.true(got.every((p) => p.ifindex === x.nearIndex), 'every packet came in on x')
  t.deepEqual(
    got.filter((p) => p.data.length === 80).map((p) => p.data),
    onX,
  )
})

const matching = (veth: ReturnType<typeof vethPair>, n: number) =>
  Array.from({ length: n }, (_, i) => udpFrame(veth.nearMac, veth.farMac, 5000, 7777, Buffer.from(`match ${i}`)))
const other = (veth: ReturnType<typeof vethPair>, n: number) => [
  ...Array.from({ length: n }, (_, i) => udpFrame(veth.nearMac, veth.farMac, 5000, 7778, Buffer.from(`udp ${i}`))),
  ...Array.from({ length: n }, (_, i) => frame(veth.nearMac, veth.farMac, 90, i)),
]

for (const form of ['tcpdump -dd text', 'instruction array'] as const) {
  test(`a filter given as ${form} lets through only what matches, none leaked`, async (t) => {
    const veth = vethPair(t)
    const text = tcpdumpDd('udp dst port 7777')
    const program: string | BpfInstruction[] =
      form === 'tcpdump -dd text'
        ? text
        : [...text.matchAll(/\{([^}]*)\}/g)].map((m) => {
            const [code, jt, jf, k] = m[1].split(',').map((n) => Number(n.trim()))
            return { code, jt, jf, k }
          })
    t.true(Array.isArray(program) ? program.length > 3 : true)
    using cap = Capture.open(veth.near, { filter: program })
    const want = matching(veth, 20)
    // Interleave: 20 matching among 40 that must not pass.
    const rest = other(veth, 20)
    const mixed = want.flatMap((f, i) => [rest[2 * i], f, rest[2 * i + 1]])
    await veth.send(mixed)
    const got = await collect(cap, Infinity, { timeoutMs: 1500, match: () => true })
    t.deepEqual(
      got.map((p) => p.data),
      want,
    )
  })
}

test('snapLen truncates in the kernel and says so', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near, { snapLen: 64 })
  const sent = [frame(veth.nearMac, veth.farMac, 1000, 1), frame(veth.nearMac, veth.farMac, 60, 2)]
  await veth.send(sent)
  const got = await collect(cap, 2)
  t.is(got.length, 2)
  t.deepEqual(got[0].data, sent[0].subarray(0, 64))
  t.is(got[0].originalLength, 1000)
  t.true(got[0].status.truncated)
  t.deepEqual(got[1].data, sent[1])
  t.false(got[1].status.truncated)
})
