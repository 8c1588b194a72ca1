// sendFrames() of an Injector and of an XdpSocket, and an XdpSocket's run of slots, are checked
// whole before anything is queued: a bad frame or length anywhere is a typed error naming it,
// nothing is queued (every TX frame comes back), and a retry sends each frame once. The binding
// reads the list itself, so code that runs while it is read (getters, a Proxy) meets frames
// already copied or not yet read, never memory that went away.

import test, { type ExecutionContext } from 'ava'
import { Capture, Injector, NetringError, XdpSocket } from 'netring'

import { collect, seqOf } from './helpers/collect'
import { frame, localVethPair } from './helpers/net'

const openXdp = (iface: string) => XdpSocket.open(iface, { mode: 'tx', frameCount: 64, ringSize: 64 })
const SENDERS = {
  XdpSocket: openXdp,
  Injector: (iface: string) => Injector.open(iface, { frameCount: 64 }),
}

/** Detaches `view`'s ArrayBuffer, as a transfer to another thread does. */
const detach = (view: Uint8Array) => structuredClone(view.buffer, { transfer: [view.buffer as ArrayBuffer] })

/** A frame in an ArrayBuffer of its own (a small Buffer shares Node's pool). */
const own = (f: Buffer) => new Uint8Array(f)

/** Nothing is queued and (an XdpSocket's) every TX frame is free: all can be lent at once, in runs. */
function allFree(t: ExecutionContext, xsk: XdpSocket | Injector, what: string) {
  t.is(xsk.stats().pending, 0, `${what}: nothing queued`)
  if (xsk instanceof Injector) return
  const runs = []
  for (let run = xsk.allocateRun(64, 60); run; run = xsk.allocateRun(64, 60)) runs.push(run)
  t.is(
    runs.reduce((n, run) => n + run.count, 0),
    xsk.info.txFrames,
    `${what}: every TX frame is free`,
  )
  for (const run of runs) run.discard()
}

for (const [kind, open] of Object.entries(SENDERS)) {
test(`${kind}.sendFrames checks every frame before queueing any: a bad one anywhere is a typed error naming frames[i]; a retry sends each once`, async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using xsk = open(veth.a)
  const good = [0, 1, 2].map((i) => frame(veth.bMac, veth.aMac, 60, i))
  const detached = own(good[1])
  detach(detached)
  const beyondRoom: unknown[] = Array.from({ length: 100 }, () => good[0])
  beyondRoom[90] = Buffer.alloc(13)
  const cases: [string, unknown[], { code: string; option?: string; message?: RegExp }][] = [
    ['a frame larger than a TX frame', [...good, Buffer.alloc(3000)], { code: 'EMSGSIZE', message: /frames\[3\]: / }],
    ['a frame shorter than a header', [...good, Buffer.alloc(13)], { code: 'EINVAL', message: /frames\[3\]: / }],
    ['a detached Uint8Array', [good[0], detached, good[2]], { code: 'EINVAL', message: /frames\[1\]: .*0 bytes/ }],
    ['a bad frame past the ring room', beyondRoom, { code: 'EINVAL', message: /frames\[90\]: / }],
    ['null', [good[0], null], { code: 'EINVAL', option: 'frames[1]', message: /got null/ }],
    // eslint-disable-next-line no-sparse-arrays
    ['a hole', [good[0], , good[1]], { code: 'EINVAL', option: 'frames[1]', message: /got undefined/ }],
    ['a string', [good[0], 'x'], { code: 'EINVAL', option: 'frames[1]', message: /got string/ }],
    ['a Float64Array', [good[0], good[1], new Float64Array(8)], { code: 'EINVAL', option: 'frames[2]' }],
  ]
  for (const [what, frames, expected] of cases) {
    const e = t.throws(() => xsk.sendFrames(frames as Buffer[]), { instanceOf: NetringError }, what)
    t.is(e?.code, expected.code, what)
    if (expected.option) t.is(e?.option, expected.option, what)
    if (expected.message) t.regex(e?.message ?? '', expected.message, what)
    allFree(t, xsk, what)
  }
  // A Buffer, a plain Uint8Array and a view at an offset into a larger buffer.
  const padded = Buffer.concat([Buffer.alloc(5), good[2]])
  t.is(xsk.sendFrames([good[0], own(good[1]), padded.subarray(5)]), 3, 'the retry, without the bad frames')
  xsk.flush()
  t.true(xsk.drain(5000))
  const got = await collect(rx, 3)
  t.deepEqual(
    got.map((p) => seqOf(p)),
    [0, 1, 2],
  )
  got.forEach((p, i) => t.true(p.data.equals(good[i]), `frame ${i} byte-exact`))
  t.deepEqual(await collect(rx, 1, { timeoutMs: 300 }), [], 'no duplicates')
})

test(`${kind}.sendFrames of a list read through getters: a frame detached while the list is read is copied before or refused, never read after; a throw queues nothing`, async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using xsk = open(veth.a)
  const bytes = [0, 1, 2].map((i) => frame(veth.bMac, veth.aMac, 60 + i, i))

  // Reading frames[1] detaches frames[0]. An XdpSocket copied it already: all three leave
  // intact. An Injector takes the frames' bytes once every element is read: frames[0] is empty
  // by then, refused, and nothing is queued.
  const early = bytes.map(own)
  const list: Uint8Array[] = [early[0], early[1], early[2]]
  Object.defineProperty(list, 1, { enumerable: true, get: () => (detach(early[0]), early[1]) })
  if (kind === 'XdpSocket') {
    t.is(xsk.sendFrames(list), 3)
  } else {
    t.regex(t.throws(() => xsk.sendFrames(list), { instanceOf: NetringError, code: 'EINVAL' })?.message ?? '', /^frames\[0\]: /)
    t.is(xsk.stats().pending, 0, 'nothing queued')
    t.is(xsk.sendFrames(bytes), 3)
  }
  t.is(early[0].byteLength, 0, 'the getter detached frames[0]')

  // Reading frames[1] detaches frames[2] before it is read: refused, nothing queued.
  const late = bytes.map(own)
  const list2: Uint8Array[] = [late[0], late[1], late[2]]
  Object.defineProperty(list2, 1, { enumerable: true, get: () => (detach(late[2]), late[1]) })
  const e = t.throws(() => xsk.sendFrames(list2), { instanceOf: NetringError })
  t.like(e, { code: 'EINVAL' })
  t.regex(e?.message ?? '', /frames\[2\]: /)
  t.is(xsk.stats().pending, 3, 'only the first list is queued')

  // A getter that throws: its error, and nothing of the list is queued.
  const list3: Uint8Array[] = [bytes[0], bytes[1]]
  Object.defineProperty(list3, 1, {
    enumerable: true,
    get: () => {
      throw new RangeError('getter refused')
    },
  })
  t.throws(() => xsk.sendFrames(list3), { message: /getter refused/ })
  t.is(xsk.stats().pending, 3, 'still only the first list')

  // A Proxy over an array is an array: read through its traps.
  t.is(xsk.sendFrames(new Proxy([bytes[0]], {})), 1)
  xsk.flush()
  t.true(xsk.drain(5000))
  const got = await collect(rx, 4)
  t.deepEqual(
    got.map((p) => seqOf(p)),
    [0, 1, 2, 0],
  )
  got.forEach((p, i) => t.true(p.data.equals(bytes[i % 3]), `frame ${i} byte-exact`))
})
}

test("an XdpSocket's run of slots is checked whole: a bad length for any slot or more slots than lent queues nothing and every slot comes back", async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using xsk = openXdp(veth.a)
  const misuses: [string, (run: NonNullable<ReturnType<XdpSocket['allocateRun']>>) => void, { code: string; option?: string; message?: RegExp }][] = [
    ['slot 1 longer than lent', (run) => run.send(3, [60, 61, 60]), { code: 'EINVAL', option: 'length', message: /slot 1 of the run/ }],
    ['slot 2 shorter than a header', (run) => run.send(3, [60, 60, 13]), { code: 'EINVAL', message: /slot 2 of the run/ }],
    ['slot 0 with 0 bytes', (run) => run.send(1, 0), { code: 'EINVAL', message: /slot 0 of the run/ }],
    ['5 of 4 slots', (run) => run.send(5), { code: 'EINVAL', option: 'count' }],
    ['3 slots, 2 lengths', (run) => run.send(3, [60, 60]), { code: 'EINVAL', option: 'lengths' }],
  ]
  for (const [what, misuse, expected] of misuses) {
    const run = xsk.allocateRun(4, 60)!
    t.is(run.count, 4, what)
    const e = t.throws(() => misuse(run), { instanceOf: NetringError }, what)
    t.is(e?.code, expected.code, what)
    if (expected.option) t.is(e?.option, expected.option, what)
    if (expected.message) t.regex(e?.message ?? '', expected.message, what)
    allFree(t, xsk, what)
  }
  // A good run: the first two slots leave, the other two come back.
  const run = xsk.allocateRun(4, 60)!
  for (let i = 0; i < run.count; i++) frame(veth.bMac, veth.aMac, 60, 10 + i).copy(run.slot(i))
  run.send(2)
  xsk.flush()
  t.true(xsk.drain(5000))
  t.deepEqual(
    (await collect(rx, 2)).map((p) => seqOf(p)),
    [10, 11],
  )
  allFree(t, xsk, 'after a good run')
})
