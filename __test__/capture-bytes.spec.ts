// What arrives is what was sent, byte for byte, with the right metadata.

import dgram from 'node:dgram'

import test from 'ava'
import { Capture, type Packet } from 'netring'

import { collect, ours, seqOf } from './helpers/collect'
import { BROADCAST, ETH_P_EXPERIMENTAL, frame, MULTICAST, OTHER_HOST, tagged, vethPair } from './helpers/net'

test('frames of every size up to the MTU arrive byte for byte, in order, with metadata', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near)
  const sizes = [60, 64, 128, 256, 512, 1000, 1400, 1514]
  const sent = sizes.map((size, i) => frame(veth.nearMac, veth.farMac, size, i))
  const before = Date.now()
  await veth.send(sent)
  const got = await collect(cap, sent.length)
  t.is(got.length, sent.length)
  got.forEach((p, i) => {
    t.deepEqual(p.data, sent[i], `frame ${i} (${sizes[i]} bytes)`)
    t.is(p.length, sizes[i])
    t.is(p.originalLength, sizes[i])
    t.is(p.direction, 'host')
    t.is(p.ifindex, veth.nearIndex)
    t.is(p.protocol, ETH_P_EXPERIMENTAL)
    t.deepEqual(p.sourceLlAddr, veth.farMac)
    t.false(p.status.truncated)
    t.is(p.vlanTci, undefined)
    const ms = Number(p.timestampNs / 1_000_000n)
    t.true(ms >= before - 1000 && ms <= Date.now() + 1000, 'timestamp is wall-clock time of arrival')
    t.is(BigInt(p.timestamp.sec) * 1_000_000_000n + BigInt(p.timestamp.nsec), p.timestampNs)
  })
})

test('packet data is a real Buffer over the ring: Buffer methods, Buffer slices, detached on release', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near)
  const sent = frame(veth.nearMac, veth.farMac, 200, 7)
  await veth.send([sent])
  const deadline = Date.now() + 5000
  let p: Packet | undefined
  while (!p && Date.now() < deadline) p = [...(cap.nextBatchBlocking(500) ?? [])].find(ours)
  if (!p) return t.fail('the frame did not arrive')
  const data = p.data
  t.true(Buffer.isBuffer(data))
  t.is(data.constructor, Buffer)
  t.is(data.readUInt16BE(12), ETH_P_EXPERIMENTAL)
  t.is(data.toString('hex'), sent.toString('hex'))
  t.true(data.equals(sent))
  const payload = data.subarray(14)
  t.true(Buffer.isBuffer(payload))
  t.true(Buffer.isBuffer(data.slice(0, 6)))
  t.deepEqual(payload, sent.subarray(14))
  cap.nextBatch() // releases the batch that held p
  t.is(data.length, 0)
  t.is(payload.length, 0)
})

test('broadcast, multicast and frames for other hosts are told apart', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near)
  const sent = [
    frame(BROADCAST, veth.farMac, 100, 0),
    frame(MULTICAST, veth.farMac, 100, 1),
    frame(OTHER_HOST, veth.farMac, 100, 2),
    frame(veth.nearMac, veth.farMac, 100, 3),
  ]
  await veth.send(sent)
  const got = await collect(cap, sent.length)
  t.deepEqual(
    got.map((p) => p.direction),
    ['broadcast', 'multicast', 'otherhost', 'host'],
  )
  got.forEach((p, i) => t.deepEqual(p.data, sent[i]))
})

test('VLAN-tagged frames read as on the wire, with the tag in metadata too', async (t) => {
  const veth = vethPair(t)
  using onWire = Capture.open(veth.near)
  using stripped = Capture.open(veth.near, { reinsertVlan: false })
  const plain = [frame(veth.nearMac, veth.farMac, 100, 0), frame(veth.nearMac, veth.farMac, 1400, 1)]
  const tags = [0x2064, 0x0005]
  const sent = plain.map((f, i) => tagged(f, tags[i]))
  await veth.send(sent)

  const withTag = await collect(onWire, sent.length)
  t.is(withTag.length, sent.length)
  withTag.forEach((p, i) => {
    t.deepEqual(p.data, sent[i], 'the tag is back in place')
    t.is(p.length, sent[i].length)
    t.is(p.vlanTci, tags[i])
    t.is(p.vlanTpid, 0x8100)
    t.true(p.status.vlanValid)
  })

  const withoutTag = await collect(stripped, sent.length)
  t.is(withoutTag.length, sent.length)
  withoutTag.forEach((p, i) => {
    t.deepEqual(p.data, plain[i], 'the frame as the kernel left it, tag in metadata only')
    t.is(p.vlanTci, tags[i])
  })
})

test('on lo, what this host sends is seen as outgoing and as received', async (t) => {
  using cap = Capture.open('lo')
  const socket = dgram.createSocket('udp4')
  t.teardown(() => socket.close())
  const payload = Buffer.from(`netring-lo-${process.pid}`)
  socket.bind(47123, '127.0.0.1')
  await new Promise((r) => socket.once('listening', r))
  await new Promise<void>((resolve, reject) => socket.send(payload, 47123, '127.0.0.1', (e) => (e ? reject(e) : resolve())))
  const isOurs = (p: { data: Buffer; protocol: number }) => p.protocol === 0x0800 && p.data.subarray(42).equals(payload)
  const got = await collect(cap, 2, { match: isOurs })
  t.deepEqual(got.map((p) => p.direction).sort(), ['host', 'outgoing'])
  for (const p of got) {
    t.is(p.data.readUInt16BE(36), 47123, 'UDP destination port')
    t.is(p.length, 14 + 20 + 8 + payload.length)
  }
})
