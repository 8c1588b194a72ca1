// Sending with offload metadata: GSO frames an Injector sends are cut into segments by the
// kernel, checksummed, and arrive as such at a peer that does no offloading itself (a tap
// device, which comes without checksum or segmentation offloads until its reader asks for
// them); metadata that does not fit its frame is EINVAL naming the field, and nothing is sent.

import { spawn } from 'node:child_process'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import test from 'ava'
import { Injector, NetringError, XdpSocket, type PacketOffload } from 'netring'

import { localVethPair, sh } from './helpers/net'

let tapCounter = 0

/**
 * A tap device in our namespace, read by a Python process that prints every IPv4 TCP frame in
 * hex until it has `want` of them (or 60 s passed), then its own count. `frames` resolves once
 * the reader has exited and all it printed was read: on 'close', not 'exit' (Node may emit
 * 'exit' before the child's last output has been read).
 */
async function tapReader(t: import('ava').ExecutionContext, want: number) {
  const name = `ntap${process.pid.toString(36)}${tapCounter++}`
  const script = `
import fcntl, os, select, struct, sys, time
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", sys.argv[1].encode(), 0x0002 | 0x1000))  # TUNSETIFF, IFF_TAP | IFF_NO_PI
print("ready", flush=True)
deadline, want, got = time.time() + 60, int(sys.argv[2]), 0
while got < want and time.time() < deadline:
    if not select.select([fd], [], [], 0.2)[0]: continue
    f = os.read(fd, 65536)
    if len(f) > 34 and f[12:14] == b"\\x08\\x00" and f[23] == 6:
        print(f.hex(), flush=True); got += 1
print("read", got, flush=True)
`
  // The tap lives as long as the reader: it goes away with it, even if the test fails.
  const child = spawn('python3', ['-c', script, name, String(want)], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 90_000 })
  t.teardown(() => child.kill())
  let out = ''
  let err = ''
  child.stderr.on('data', (d) => (err += d))
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d
      if (out.startsWith('ready\n')) resolve()
    })
    child.on('close', () => reject(new Error(`the tap reader exited: ${out}${err}`)))
  })
  const done = new Promise<Buffer[]>((resolve, reject) =>
    child.on('close', () => {
      const lines = out.split('\n').slice(1).filter(Boolean)
      // The reader's own count: fewer frames printed than it read would be lost output, fewer
      // read than wanted a frame that never reached the tap.
      if (lines.at(-1) !== `read ${want}`) reject(new Error(`the tap reader saw ${lines.at(-1)} of ${want} frames; stderr: ${err}`))
      resolve(lines.slice(0, -1).map((h) => Buffer.from(h, 'hex')))
    }),
  )
  // Awaited by the test; a test that failed before then leaves it unobserved.
  done.catch(() => undefined)
  await ready
  sh('sysctl', ['-qw', `net.ipv6.conf.${name}.disable_ipv6=1`])
  sh('ip', ['link', 'set', name, 'up'])
  return { name, frames: done }
}

function sum(bytes: Uint8Array, start = 0): number {
  let s = start
  for (let i = 0; i + 1 < bytes.length; i += 2) s += (bytes[i] << 8) | bytes[i + 1]
  if (bytes.length % 2) s += bytes[bytes.length - 1] << 8
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16)
  return s
}

/** The pseudo-header sum of an IPv4 TCP frame whose TCP segment is `tcpLength` bytes. */
function pseudo(f: Buffer, tcpLength: number): number {
  return sum(f.subarray(26, 34), 6 + tcpLength)
}

/** An IPv4 TCP frame with a `payload`, its checksum left partial as a GSO sender leaves it. */
function tcpFrame(payload: Buffer, seq: number): Buffer {
  const f = Buffer.alloc(54 + payload.length)
  Buffer.from('02000000000202000000000108004500', 'hex').copy(f)
  f.writeUInt16BE(40 + payload.length, 16)
  f.writeUInt16BE(0x4000, 20) // don't fragment
  f[22] = 64
  f[23] = 6
  Buffer.from([10, 9, 9, 1, 10, 9, 9, 2]).copy(f, 26)
  f.writeUInt16BE(~sum(f.subarray(14, 34)) & 0xffff, 24)
  f.writeUInt16BE(40000, 34)
  f.writeUInt16BE(5555, 36)
  f.writeUInt32BE(seq, 38)
  f[46] = 5 << 4
  f[47] = 0x18 // PSH, ACK
  f.writeUInt16BE(65535, 48)
  // The kernel's partial-checksum convention: the pseudo-header sum, completed from csumStart.
  f.writeUInt16BE(pseudo(f, 20 + payload.length), 50)
  payload.copy(f, 54)
  return f
}

const tso = (gsoSize: number): Partial<PacketOffload> => ({
  gsoType: 'tcpv4',
  gsoSize,
  hdrLen: 54,
  needsCsum: true,
  csumStart: 34,
  csumOffset: 16,
})

/** What one GSO frame must arrive as: its segments' sequence numbers and payloads. */
interface Segment {
  seq: number
  payload: Buffer
}

/**
 * GSO frames of the given payload sizes and MSSs (payloads numbered from `seq`), with what they
 * must arrive as.
 */
function gsoFrames(sends: readonly { payload: number; mss: number }[], seq = 1) {
  const expected: Segment[] = []
  const frames = sends.map((s, n) => {
    const payload = Buffer.alloc(s.payload)
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 13 + n + seq) & 0xff
    const f = tcpFrame(payload, seq)
    for (let off = 0; off < s.payload; off += s.mss) expected.push({ seq: seq + off, payload: payload.subarray(off, off + s.mss) })
    seq += s.payload
    return f
  })
  return { frames, offloads: sends.map((s) => tso(s.mss)), expected }
}

/** Every segment arrived in order, with valid IP and TCP checksums and its own payload. */
function checkSegments(t: import('ava').ExecutionContext, frames: Buffer[], expected: Segment[]) {
  t.is(frames.length, expected.length, 'one frame per segment')
  frames.forEach((f, i) => {
    const e = expected[i]
    t.is(f.readUInt32BE(38), e.seq, `segment ${i}: in order`)
    t.is(f.readUInt16BE(16), 40 + e.payload.length, `segment ${i}: IP length`)
    t.is(sum(f.subarray(14, 34)), 0xffff, `segment ${i}: IP header checksum`)
    t.is(sum(f.subarray(34), pseudo(f, f.length - 34)), 0xffff, `segment ${i}: TCP checksum`)
    t.deepEqual(f.subarray(54), e.payload, `segment ${i}: payload`)
  })
}

test('GSO frames sent with offload metadata arrive as segmented, checksummed frames (ring, jumbo and slot paths)', async (t) => {
  const sends = [
    { payload: 1500, mss: 500 }, // larger than the MTU, fits a slot
    { payload: 20_000, mss: 1000 }, // larger than a slot
    { payload: 1200, mss: 600 }, // through a slot
  ]
  const { frames, offloads, expected } = gsoFrames(sends)
  const tap = await tapReader(t, expected.length)
  using tx = Injector.open(tap.name, { offload: true })
  t.true(tx.info.offload)
  t.true(tx.send(frames[0], { offload: offloads[0] }), 'ring: queued')
  t.true(tx.send(frames[1], { offload: offloads[1] }), 'jumbo: queued')
  const slot = tx.allocate(frames[2].length)!
  frames[2].copy(slot.data)
  slot.send(frames[2].length, { offload: offloads[2] })
  t.true(tx.drain(5000))
  t.like(tx.stats(), { sent: sends.length, rejected: 0, pending: 0 })
  checkSegments(t, await tap.frames, expected)
})

test('sendFrames with offload metadata, one per frame or one for all: ring and second-socket frames arrive segmented, in order', async (t) => {
  // A 4-frame ring: the large frames wait for those queued before them, and the list goes on
  // from where a call stopped.
  const perFrame = gsoFrames([
    { payload: 1500, mss: 500 },
    { payload: 6000, mss: 1000 },
    { payload: 700, mss: 700 },
    { payload: 1400, mss: 700 },
    { payload: 9000, mss: 1500 },
    { payload: 1200, mss: 600 },
  ])
  const forAll = gsoFrames(Array.from({ length: 5 }, (_, i) => ({ payload: i === 2 ? 8000 : 1600, mss: 800 })), 100_001)
  const tap = await tapReader(t, perFrame.expected.length + forAll.expected.length)
  using tx = Injector.open(tap.name, { offload: true, frameCount: 4 })
  const sendAll = (frames: Buffer[], offload: (i: number) => Parameters<Injector['sendFrames']>[1]) => {
    for (let queued = 0, calls = 0; queued < frames.length; calls++) {
      t.true(calls < 10_000, 'sendFrames makes progress')
      const n = tx.sendFrames(frames.slice(queued), offload(queued))
      queued += n
      if (n === 0) tx.drain(1000)
    }
  }
  sendAll(perFrame.frames, (from) => ({ offload: perFrame.offloads.slice(from) }))
  sendAll(forAll.frames, () => ({ offload: tso(800) }))
  t.true(tx.drain(5000))
  t.like(tx.stats(), { sent: perFrame.frames.length + forAll.frames.length, rejected: 0, pending: 0 })
  checkSegments(t, await tap.frames, [...perFrame.expected, ...forAll.expected])
})

test('a run of slots sent with offload metadata, one per slot or one for all, arrives segmented, in order', async (t) => {
  const perSlot = gsoFrames([
    { payload: 1500, mss: 500 },
    { payload: 1000, mss: 1000 },
    { payload: 1800, mss: 600 },
  ])
  const forAll = gsoFrames(Array.from({ length: 4 }, () => ({ payload: 1600, mss: 400 })), 50_001)
  const tap = await tapReader(t, perSlot.expected.length + forAll.expected.length)
  using tx = Injector.open(tap.name, { offload: true })
  for (const [{ frames }, offload] of [
    [perSlot, perSlot.offloads],
    [forAll, tso(400)],
  ] as const) {
    const run = tx.allocateRun(frames.length + 1, 1900)!
    t.is(run.count, frames.length + 1)
    frames.forEach((f, i) => f.copy(run.slot(i)))
    // One slot more than sent: it goes back unsent.
    run.send(
      frames.length,
      frames.map((f) => f.length),
      { offload },
    )
  }
  t.true(tx.drain(5000))
  t.like(tx.stats(), { sent: perSlot.frames.length + forAll.frames.length, rejected: 0, pending: 0 })
  checkSegments(t, await tap.frames, [...perSlot.expected, ...forAll.expected])
})

test("writable({ offload: true }) sends each chunk's own offload metadata, packets' and { data, offload } alike, in order", async (t) => {
  const { frames, offloads, expected } = gsoFrames([
    { payload: 1500, mss: 500 },
    { payload: 12_000, mss: 1000 },
    { payload: 800, mss: 800 },
    { payload: 3000, mss: 1000 },
  ])
  const tap = await tapReader(t, expected.length)
  using tx = Injector.open(tap.name, { offload: true, frameCount: 4 })
  await pipeline(
    Readable.from(frames.map((data, i) => ({ data, offload: offloads[i] }))),
    tx.writable({ offload: true }),
  )
  t.like(tx.stats(), { sent: frames.length, rejected: 0, pending: 0 })
  checkSegments(t, await tap.frames, expected)
})

test('sendAsync with offload metadata: frames through the ring and the second socket settle and arrive in call order', async (t) => {
  // Per round: two frames that fit a slot, then one larger than a slot (the second socket),
  // through a 4-frame ring, so the large ones wait for the frames queued before them.
  const rounds = 6
  const sends = Array.from({ length: rounds }, () => [
    { payload: 600, mss: 600 },
    { payload: 1400, mss: 700 },
    { payload: 6000, mss: 1000 },
  ]).flat()
  const segments = sends.reduce((n, s) => n + s.payload / s.mss, 0)
  const tap = await tapReader(t, segments)
  using tx = Injector.open(tap.name, { offload: true, frameCount: 4 })
  let seq = 1
  const expected: number[] = []
  const settled: number[] = []
  const promises = sends.map((s, i) => {
    const f = tcpFrame(Buffer.alloc(s.payload, i), seq)
    for (let off = 0; off < s.payload; off += s.mss) expected.push(seq + off)
    seq += s.payload
    return tx.sendAsync(f, { offload: tso(s.mss) }).then(() => settled.push(i))
  })
  await Promise.all(promises)
  t.deepEqual(settled, sends.map((_, i) => i), 'settled in call order')
  t.like(tx.stats(), { sent: sends.length, rejected: 0, withdrawn: 0 })
  const frames = await tap.frames
  t.deepEqual(frames.map((f) => f.readUInt32BE(38)), expected, 'every segment arrived, in call order')
})

test('offload metadata that does not fit its frame is EINVAL naming the field; nothing is sent', (t) => {
  const veth = localVethPair(t)
  using tx = Injector.open(veth.a, { offload: true })
  const f = tcpFrame(Buffer.alloc(3000), 1)
  const short = f.subarray(0, 1000)
  const bad: [Partial<PacketOffload>, string, Buffer?][] = [
    [{ ...tso(1000), gsoSize: 0 }, 'offload.gsoSize'],
    [{ ...tso(1000), gsoSize: 70_000 }, 'offload.gsoSize'],
    [{ ...tso(1000), gsoType: 'sctp' as never }, 'offload.gsoType'],
    [{ ...tso(1000), needsCsum: false }, 'offload.csumStart'],
    [{ ...tso(1000), hdrLen: 4000 }, 'offload.hdrLen'],
    [{ ...tso(1000), csumStart: 5000 }, 'offload.csumStart'],
    [{ ...tso(1000), csumStart: 2 }, 'offload.csumStart'],
    [{ ...tso(1000), csumOffset: 6 }, 'offload.csumOffset'],
    [{ needsCsum: true, csumStart: 34, csumOffset: 1000 }, 'offload.csumOffset', short],
    [{ gsoSize: 100 }, 'offload.gsoSize', short],
    [{ csumStart: 34, csumOffset: 16 }, 'offload.csumStart', short],
    [{ gsoSize: -1 }, 'offload.gsoSize'],
    [{ gsoSzie: 1 } as never, 'offload.gsoSzie'],
  ]
  for (const [offload, field, frame = f] of bad) {
    const e = t.throws(() => tx.send(frame, { offload }), { instanceOf: NetringError, code: 'EINVAL' }, field)!
    t.is(e.option, field)
    // A slot whose metadata is refused goes back to the ring, as one whose frame is refused.
    const slot = tx.allocate(1000)!
    short.copy(slot.data)
    t.throws(() => slot.send(1000, { offload }), { code: 'EINVAL' }, `slot: ${field}`)
    t.throws(() => slot.discard(), { message: /already sent or discarded/ })
  }
  // Larger than the MTU without a GSO type, or than any IP packet with one.
  t.throws(() => tx.send(f), { code: 'EMSGSIZE' })
  t.throws(() => tx.send(Buffer.alloc(70_000), { offload: tso(1000) }), { code: 'EMSGSIZE' })
  t.true(tx.drain(1000))
  t.like(tx.stats(), { sent: 0, rejected: 0, pending: 0 })

  using plain = Injector.open(veth.a)
  t.false(plain.info.offload)
  t.throws(() => plain.send(f.subarray(0, 1000), { offload: tso(500) }), { code: 'EINVAL', message: /offload: true/ })
})

test('offload metadata for a list or a run is checked whole first: EINVAL naming the field and its index, nothing sent', (t) => {
  const veth = localVethPair(t)
  using tx = Injector.open(veth.a, { offload: true })
  const { frames } = gsoFrames([
    { payload: 1500, mss: 500 },
    { payload: 1500, mss: 500 },
    { payload: 1500, mss: 500 },
  ])
  const bad: [unknown, string][] = [
    [[tso(500), { ...tso(500), gsoSize: 0 }, tso(500)], 'offload[1].gsoSize'], // checked by the engine
    [[tso(500), tso(500), { ...tso(500), csumOffset: 6 }], 'offload[2].csumOffset'],
    [[{ ...tso(500), hdrLen: 70_000 }, tso(500), tso(500)], 'offload[0].hdrLen'], // past 16 bits
    [[tso(500), { ...tso(500), gsoType: 'sctp' }, tso(500)], 'offload[1].gsoType'],
    [[tso(500), { gsoSzie: 1 }, tso(500)], 'offload[1].gsoSzie'],
    [[tso(500), 'x', tso(500)], 'offload[1]'],
    [[tso(500), tso(500)], 'offload'], // one per frame, or one for all
    [{ ...tso(500), csumStart: 2 }, 'offload.csumStart'], // one for all
  ]
  for (const [offload, option] of bad) {
    const e = t.throws(() => tx.sendFrames(frames, { offload } as never), { instanceOf: NetringError, code: 'EINVAL' }, option)!
    t.is(e.option, option, `sendFrames: ${option}`)
    const run = tx.allocateRun(3, 1600)!
    frames.forEach((f, i) => f.copy(run.slot(i)))
    const r = t.throws(() => run.send(3, 1554, { offload } as never), { instanceOf: NetringError, code: 'EINVAL' }, option)!
    t.is(r.option, option, `run.send: ${option}`)
    // The run went back whole, as when a length is refused.
    t.throws(() => run.discard(), { message: /already sent or discarded/ })
  }
  // A frame without metadata is as large as the interface takes, with it or not.
  const plain = t.throws(() => tx.sendFrames(frames, { offload: [tso(500), null, tso(500)] }), { instanceOf: NetringError })!
  t.is(plain.code, 'EMSGSIZE')
  t.true(tx.drain(1000))
  t.like(tx.stats(), { sent: 0, rejected: 0, pending: 0 })

  using withoutOffload = Injector.open(veth.a)
  t.throws(() => withoutOffload.sendFrames(frames, { offload: tso(500) }), { code: 'EINVAL', message: /offload: true/ })
  const run = withoutOffload.allocateRun(2, 1000)!
  t.throws(() => run.send(2, 1000, { offload: tso(500) }), { code: 'EINVAL', message: /offload: true/ })
  t.like(withoutOffload.stats(), { sent: 0, pending: 0 })
})

test('an XdpSocket sends no offload metadata: sendFrames, a run and writable() refuse it with EINVAL naming offload', (t) => {
  const veth = localVethPair(t)
  using xsk = XdpSocket.open(veth.a, { mode: 'tx', program: 'none' })
  const { frames } = gsoFrames([{ payload: 600, mss: 600 }])
  const einval = { instanceOf: NetringError, code: 'EINVAL', message: /no offload metadata/ }
  t.is(t.throws(() => xsk.sendFrames(frames, { offload: tso(600) } as never), einval)?.option, 'offload')
  t.is(t.throws(() => xsk.writable({ offload: true } as never), einval)?.option, 'offload')
  const run = xsk.allocateRun(1, frames[0].length)!
  frames[0].copy(run.slot(0))
  t.is(t.throws(() => run.send(1, frames[0].length, { offload: tso(600) }), { instanceOf: NetringError, code: 'EINVAL' })?.option, 'offload')
  t.throws(() => run.discard(), { message: /already sent or discarded/ })
  t.true(xsk.drain(1000))
  t.is(xsk.stats().sent, 0)
})
