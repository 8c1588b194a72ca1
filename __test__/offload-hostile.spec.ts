// The offload paths under attack: metadata that is odd, frames that are odd, buffers that are
// views of rings. Whatever goes in, netring throws a typed error before anything is queued, or
// sends the frame: it never crashes, never hangs, and never counts as sent a frame the kernel
// dropped (a TX ring with PACKET_LOSS skips a frame whose header the kernel refuses without a
// word, and a frame the kernel sends uncut while larger than the MTU is dropped by the device
// and retried on every kick, holding up every frame after it).

import { finished } from 'node:stream/promises'

import test from 'ava'
import { Capture, Injector, NetringError, type PacketOffload } from 'netring'

import { runChild, within } from './helpers/child'
import { collect } from './helpers/collect'
import { localVethPair } from './helpers/net'
import { ipv4Frame, tcp, udp } from './helpers/traffic'

const MAC_A = Buffer.from('020000000a01', 'hex')
const MAC_B = Buffer.from('020000000a02', 'hex')
/** Our frames, told apart by their UDP/TCP source port. */
const PORT = 47_111

const udpFrame = (payload: number, seq = 0) => {
  const p = Buffer.alloc(payload, seq & 0xff)
  if (payload >= 4) p.writeUInt32BE(seq, 0)
  return ipv4Frame(MAC_B, MAC_A, '10.77.0.1', '10.77.0.2', 17, udp(PORT, 9, p))
}
const tcpFrame = (payload: number) => ipv4Frame(MAC_B, MAC_A, '10.77.0.1', '10.77.0.2', 6, tcp(PORT, 9, 0x18, Buffer.alloc(payload, 7)))
const ours = (p: { data: Buffer }) => p.data.length >= 36 && p.data.readUInt16BE(12) === 0x0800 && p.data.readUInt16BE(34) === PORT
const seqOfUdp = (p: { data: Buffer }) => p.data.readUInt32BE(42)

/** A TSO header for an IPv4 TCP frame built by `tcpFrame`. */
const tso = (gsoSize: number): Partial<PacketOffload> => ({ gsoType: 'tcpv4', gsoSize, hdrLen: 54, needsCsum: true, csumStart: 34, csumOffset: 16 })

/** Metadata the kernel refuses or mishandles, each with the frame it goes with and what netring must answer. */
const KERNEL_REFUSES: { what: string; frame: () => Buffer; offload: Partial<PacketOffload>; code: string; option: string }[] = [
  { what: 'hdrLen beyond a frame without a gsoType', frame: () => udpFrame(58), offload: { hdrLen: 1000 }, code: 'EINVAL', option: 'offload.hdrLen' },
  { what: 'gsoSize 65535 (GSO_BY_FRAGS)', frame: () => tcpFrame(1700), offload: tso(65_535), code: 'EINVAL', option: 'offload.gsoSize' },
  {
    what: 'udp-l4 without needsCsum',
    frame: () => udpFrame(1700),
    offload: { gsoType: 'udp-l4', gsoSize: 1000 },
    code: 'EINVAL',
    option: 'offload.needsCsum',
  },
  { what: 'tcpv4 without needsCsum on a UDP frame', frame: () => udpFrame(1700), offload: { gsoType: 'tcpv4', gsoSize: 1000 }, code: 'EINVAL', option: 'offload.gsoType' },
  {
    what: 'a TCP GSO frame whose csumStart leaves no room for the TCP header',
    frame: () => tcpFrame(1700),
    offload: { ...tso(1000), csumStart: 1700 + 54 - 19, hdrLen: 0 },
    code: 'EINVAL',
    option: 'offload.csumStart',
  },
  {
    what: 'a TCP GSO frame whose csumStart is not at its TCP header',
    frame: () => tcpFrame(1700),
    offload: { ...tso(1000), csumStart: 30 },
    code: 'EINVAL',
    option: 'offload.csumStart',
  },
  {
    what: 'a gsoSize not below the payload of a frame larger than the MTU (sent uncut)',
    frame: () => tcpFrame(1700),
    offload: tso(60_000),
    code: 'EMSGSIZE',
    option: 'offload.gsoSize',
  },
]

test('metadata the kernel would refuse or send uncut is refused at send, typed; nothing is counted sent and the ring goes on', async (t) => {
  const veth = localVethPair(t)
  using sink = Capture.open(veth.b, { profile: 'low-latency' })
  using tx = Injector.open(veth.a, { offload: true })
  let seq = 0
  for (const c of KERNEL_REFUSES) {
    const expected = { instanceOf: NetringError, code: c.code }
    const e = t.throws(() => tx.send(c.frame(), { offload: c.offload }), expected, `send: ${c.what}`)
    t.is(e?.option, c.option, c.what)
    // A slot is lent for frames up to the MTU.
    if (c.frame().length <= 1514) {
      const slot = tx.allocate(c.frame().length)!
      c.frame().copy(slot.data)
      t.throws(() => slot.send(slot.length, { offload: c.offload }), expected, `slot: ${c.what}`)
    }
    // sendAsync settles: a refused frame rejects, it never waits for a ring that cannot move.
    const sent = tx.sendAsync(c.frame(), { offload: c.offload })
    t.is(await within(sent.catch(() => undefined), 5000), 'resolved', `sendAsync settles: ${c.what}`)
    await t.throwsAsync(sent, expected, `sendAsync: ${c.what}`)
    // The frame after it leaves.
    t.true(tx.send(udpFrame(60, ++seq)))
  }
  t.is(await within(tx.drained(), 5000), 'resolved', 'nothing holds up the ring')
  t.like(tx.stats(), { sent: KERNEL_REFUSES.length, rejected: 0, pending: 0 }, 'only the good frames were sent')
  const got = await collect(sink, KERNEL_REFUSES.length, { match: ours })
  t.deepEqual(got.map(seqOfUdp), Array.from({ length: KERNEL_REFUSES.length }, (_, i) => i + 1), 'and they all arrived, nothing else did')
})

test('odd numbers in offload metadata are EINVAL naming the field', (t) => {
  const veth = localVethPair(t)
  using tx = Injector.open(veth.a, { offload: true })
  const f = tcpFrame(1000)
  for (const field of ['gsoSize', 'hdrLen', 'csumStart', 'csumOffset'] as const) {
    for (const value of [Infinity, -Infinity, NaN, -1, 1.5, 65_536, 2 ** 32, 2 ** 53, '10', null, {}]) {
      const offload = { ...tso(500), [field]: value } as unknown as Partial<PacketOffload>
      const e = t.throws(() => tx.send(f, { offload }), { instanceOf: NetringError, code: 'EINVAL' }, `${field}: ${String(value)}`)
      t.is(e?.option, `offload.${field}`)
    }
  }
  for (const [field, value] of [['gsoType', 'tcp'], ['gsoType', 1], ['needsCsum', 1], ['csumValid', 'yes']] as const) {
    const e = t.throws(() => tx.send(f, { offload: { [field]: value } as never }), { instanceOf: NetringError, code: 'EINVAL' })
    t.is(e?.option, `offload.${field}`)
  }
  t.true(tx.drain(1000))
  t.is(tx.stats().sent, 0)
})

test('frame sizes at the edges with offload metadata: 0 bytes, a slot exactly, one byte over, 64 KiB and more', async (t) => {
  // A large MTU, so that a slot (not the MTU) is the limit of a frame without a gsoType.
  const veth = localVethPair(t, { mtu: 9000 })
  using sink = Capture.open(veth.b, { profile: 'low-latency', snapLen: 128 })
  using tx = Injector.open(veth.a, { offload: true })
  const slot = tx.info.slotCapacity
  t.throws(() => tx.send(Buffer.alloc(0), { offload: {} }), { instanceOf: NetringError, code: 'EINVAL' })
  t.throws(() => tx.send(Buffer.alloc(13), { offload: {} }), { instanceOf: NetringError, code: 'EINVAL' })
  t.true(tx.send(udpFrame(slot - 42, 1), { offload: {} }), 'a frame of exactly a slot')
  t.throws(() => tx.send(udpFrame(slot - 41, 2), { offload: {} }), { instanceOf: NetringError, code: 'EMSGSIZE' }, 'one byte over, uncut')
  // With a gsoType it leaves through the second socket (after what was queued before it).
  await tx.sendAsync(tcpFrame(slot - 53), { offload: tso(1400) })
  // Larger than any IP packet, with or without a gsoType; 64 KiB of zeroes is no IP packet to cut.
  for (const size of [65_536 + 60, 1 << 20]) {
    // An IP packet's length field says at most 65535: the bytes after it are more than any.
    const long = Buffer.concat([tcpFrame(60_000), Buffer.alloc(size - 60_054)])
    t.throws(() => tx.send(long, { offload: tso(1400) }), { instanceOf: NetringError, code: 'EMSGSIZE' }, `${size} bytes`)
    t.throws(() => tx.send(Buffer.alloc(size)), { instanceOf: NetringError, code: 'EMSGSIZE' }, `${size} bytes, no metadata`)
  }
  const e = t.throws(() => tx.send(Buffer.alloc(65_536), { offload: tso(1400) }), { instanceOf: NetringError, code: 'EINVAL' })
  t.is(e?.option, 'offload.gsoType')
  t.true(await tx.drained().then(() => true))
  // A veth takes GSO frames as they are: the one to cut arrives whole.
  const got = await collect(sink, 2, { match: ours })
  t.deepEqual(got.map((p) => p.originalLength), [slot, slot + 1])
  t.like(tx.stats(), { sent: 2, rejected: 0, pending: 0 })
})

test('a Buffer that is a view of a TX slot of the same injector, or of a capture ring, is copied, and refused once detached', async (t) => {
  const veth = localVethPair(t)
  using sink = Capture.open(veth.b, { profile: 'low-latency', offloadInfo: true })
  using tx = Injector.open(veth.a, { offload: true })
  const slot = tx.allocate(100)!
  udpFrame(58, 1).copy(slot.data)
  t.true(tx.send(slot.data.subarray(0, 100), { offload: {} }), "the slot's bytes, sent by copy")
  slot.send(100)
  t.is(slot.data.length, 0, 'the slot view is detached once sent')
  t.throws(() => tx.send(slot.data, { offload: {} }), { instanceOf: NetringError, code: 'EINVAL' })
  t.true(await tx.drained().then(() => true))
  // A packet of the capture ring, sent on while its batch is held, then after release.
  const got: Buffer[] = []
  const deadline = Date.now() + 5000
  while (got.length < 2 && Date.now() < deadline) {
    const batch = sink.nextBatch()
    if (!batch) {
      await new Promise((r) => setTimeout(r, 5))
      continue
    }
    for (const p of batch) {
      if (!ours(p)) continue
      got.push(p.data)
      t.true(tx.send(p.data, { offload: p.offload }), 'a ring view with its own metadata')
    }
    batch.release()
  }
  t.is(got.length, 2)
  t.true(got.every((b) => b.length === 0), 'views of a released batch are detached')
  t.throws(() => tx.send(got[0]!, { offload: {} }), { instanceOf: NetringError, code: 'EINVAL' })
  t.true(await tx.drained().then(() => true))
  t.like(tx.stats(), { sent: 4, rejected: 0 })
})

test('pkt.offload after its batch was released throws a typed error; a copy keeps it', async (t) => {
  const veth = localVethPair(t)
  using sink = Capture.open(veth.b, { profile: 'low-latency', offloadInfo: true })
  using tx = Injector.open(veth.a, { offload: true })
  t.true(tx.send(udpFrame(100, 1), { offload: {} }))
  t.true(await tx.drained().then(() => true))
  const deadline = Date.now() + 5000
  let packet
  let batch
  while (!packet && Date.now() < deadline) {
    batch = sink.nextBatch()
    packet = batch && [...batch].find(ours)
    if (!packet) await new Promise((r) => setTimeout(r, 5))
  }
  t.truthy(packet)
  const owned = packet!.copy()
  batch!.release()
  t.throws(() => packet!.offload, { instanceOf: NetringError })
  t.like(owned.offload, { gsoType: 'none', needsCsum: false })
})

test('send() with a detached Buffer, in a child process: a typed error, no crash', async (t) => {
  const r = await runChild(
    `
const { Injector } = require('netring')
const tx = Injector.open(process.argv[1], { offload: true })
const ab = new ArrayBuffer(100)
const view = Buffer.from(ab)
structuredClone(ab, { transfer: [ab] })
const out = []
;(async () => {
  for (const send of [(b) => tx.send(b, { offload: {} }), (b) => tx.send(b), (b) => tx.sendAsync(b, { offload: {} })]) {
    try { out.push(String(await send(view))) } catch (e) { out.push(e.code) }
  }
  tx.close()
  console.log(JSON.stringify(out))
})()
`,
    [localVethPair(t).a],
  )
  t.false(r.timedOut)
  t.is(r.signal, null)
  t.is(r.code, 0, r.stderr)
  t.deepEqual(r.result, ['EINVAL', 'EINVAL', 'EINVAL'])
})

// checkOffload hands the binding a copy of the values it checked, read once: a getter, or a change
// made while a sendAsync frame waits for room, cannot reach the binding unchecked.
test('offload metadata is read once, when the call checks it: a getter or a later change cannot reach the binding', async (t) => {
  const veth = localVethPair(t)
  using tx = Injector.open(veth.a, { offload: true, frameCount: 4 })
  let reads = 0
  const getter = {
    get gsoSize() {
      return reads++ === 0 ? 0 : 'x'
    },
  } as unknown as Partial<PacketOffload>
  t.true(tx.send(udpFrame(58), { offload: getter }), 'sent with the gsoSize that was checked')
  // Eight frames for a ring of four: the last waits for room while its metadata is changed.
  const later: Record<string, unknown> = {}
  const sends = Array.from({ length: 8 }, (_, i) => tx.sendAsync(udpFrame(58, i), { offload: i === 7 ? later : {} }))
  later.gsoSize = 'later'
  await t.notThrowsAsync(Promise.all(sends))
})

test("writable({ offload: true }) reads each chunk's metadata once: chunks written together are checked, then queued as checked", async (t) => {
  const veth = localVethPair(t)
  using tx = Injector.open(veth.a, { offload: true })
  const flipping = () => {
    let reads = 0
    return {
      get gsoSize() {
        return reads++ === 0 ? 0 : 'x'
      },
    } as unknown as Partial<PacketOffload>
  }
  const w = tx.writable({ offload: true })
  // Corked: the two chunks reach writev together, the path that checks all before sending any.
  w.cork()
  w.write({ data: udpFrame(58, 0), offload: flipping() })
  w.write({ data: udpFrame(58, 1), offload: flipping() })
  w.uncork()
  w.end()
  await t.notThrowsAsync(finished(w))
  t.is(tx.stats().sent, 2)
})
