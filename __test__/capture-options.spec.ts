// Options that change what the kernel does, each shown on real traffic.

import dgram from 'node:dgram'

import test from 'ava'
import { Capture } from 'netring'

import { collect } from './helpers/collect'
import { udpFrame, vethPair } from './helpers/net'

const udp = (p: { protocol: number }) => p.protocol === 0x0800

test('fillRxhash makes the kernel fill rxhash, the same for one flow and different across flows', async (t) => {
  const veth = vethPair(t)
  using hashed = Capture.open(veth.near, { fillRxhash: true })
  using plain = Capture.open(veth.near)
  const flows = [5000, 5000, 6000, 7000].map((port, i) => udpFrame(veth.nearMac, veth.farMac, port, 9, Buffer.from(`flow ${i}`)))
  await veth.send(flows)
  const got = await collect(hashed, 4, { match: udp })
  t.is(got.length, 4)
  t.true(got.every((p) => p.rxhash !== 0))
  t.is(got[0].rxhash, got[1].rxhash, 'one flow, one hash')
  t.is(new Set(got.map((p) => p.rxhash)).size, 3, 'three flows, three hashes')
  const without = await collect(plain, 4, { match: udp })
  t.true(without.every((p) => p.rxhash === 0), 'not asked for, not filled (veth provides no hash)')
})

test('ignoreOutgoing leaves out what this host sends', async (t) => {
  using all = Capture.open('lo')
  using incoming = Capture.open('lo', { ignoreOutgoing: true })
  const socket = dgram.createSocket('udp4')
  t.teardown(() => socket.close())
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()))
  const payload = Buffer.from(`ignore-outgoing-${process.pid}`)
  await new Promise<void>((resolve, reject) => socket.send(payload, socket.address().port, '127.0.0.1', (e) => (e ? reject(e) : resolve())))
  const ours = (p: { protocol: number; data: Buffer }) => p.protocol === 0x0800 && p.data.subarray(42).equals(payload)
  t.deepEqual((await collect(all, 2, { match: ours })).map((p) => p.direction).sort(), ['host', 'outgoing'])
  t.deepEqual((await collect(incoming, 2, { match: ours, timeoutMs: 500 })).map((p) => p.direction), ['host'])
})

test('promiscuous, busy polling and hardware timestamps are accepted; packets still arrive, stamped by the kernel where the NIC has no clock', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near, { promiscuous: true, busyPollUs: 50, timestampSource: 'hardware' })
  const before = Date.now()
  await veth.send([udpFrame(veth.nearMac, veth.farMac, 1, 2, Buffer.from('stamped'))])
  const [p] = await collect(cap, 1, { match: udp })
  t.truthy(p)
  const ms = Number(p.timestampNs / 1_000_000n)
  t.true(ms >= before - 1000 && ms <= Date.now() + 1000)
  // veth has no clock: the kernel's receive stamp if it took one, else the ring write time.
  t.true(['software', 'ring'].includes(p.status.timestampSource), p.status.timestampSource)
  using plain = Capture.open(veth.near)
  await veth.send([udpFrame(veth.nearMac, veth.farMac, 1, 2, Buffer.from('ring time'))])
  // Software while any socket on the host has receive timestamping on (the kernel then stamps
  // every packet), else the ring write time; never a hardware stamp it does not have.
  const plainSource = (await collect(plain, 1, { match: udp }))[0].status.timestampSource
  t.true(['software', 'ring'].includes(plainSource), plainSource)
})
