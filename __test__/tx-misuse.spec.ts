// Transmit misuse: wrong lengths, wrong types, sparse arrays, a list of frames with one bad frame. Each
// is a NetringError naming what was wrong, queues nothing, and leaves the Injector usable: the
// frames sent afterwards leave and drained() resolves.

import test from 'ava'
import { Capture, Injector, NetringError } from 'netring'

import { runChild, within } from './helpers/child'
import { collect, seqOf } from './helpers/collect'
import { frame, localVethPair } from './helpers/net'

test('bad lengths for a slot or a run of slots are EINVAL naming the option; nothing is queued, the ring goes on', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using tx = Injector.open(veth.a, { frameCount: 16 })
  const misuses: [string, (tx: Injector) => void, string][] = [
    ['slot.send(61) on a 60-byte slot', (tx) => tx.allocate(60)!.send(61), 'length'],
    ['slot.send(null)', (tx) => tx.allocate(60)!.send(null as never), 'length'],
    ["slot.send('60')", (tx) => tx.allocate(60)!.send('60' as never), 'length'],
    ['slot.send(-1)', (tx) => tx.allocate(60)!.send(-1), 'length'],
    ['run.send(null)', (tx) => tx.allocateRun(4, 60)!.send(null as never), 'count'],
    ['run.send(5) of 4 slots', (tx) => tx.allocateRun(4, 60)!.send(5), 'count'],
    ['run.send(2, [60, undefined])', (tx) => tx.allocateRun(4, 60)!.send(2, [60, undefined as never]), 'lengths'],
    // eslint-disable-next-line no-sparse-arrays
    ['run.send(2, [60, , 60]) (sparse)', (tx) => tx.allocateRun(4, 60)!.send(2, [60, , 60] as number[]), 'lengths'],
    ['run.send(3, [60, 60]) with too few lengths', (tx) => tx.allocateRun(4, 60)!.send(3, [60, 60]), 'lengths'],
    ['run.send(2, [60, 61])', (tx) => tx.allocateRun(4, 60)!.send(2, [60, 61]), 'length'],
    ["run.send(2, '60')", (tx) => tx.allocateRun(4, 60)!.send(2, '60' as never), 'lengths'],
    ['allocate(null)', (tx) => tx.allocate(null as never), 'length'],
    ["allocateRun('4', 60)", (tx) => tx.allocateRun('4' as never, 60), 'count'],
    ['allocateRun(0, 60)', (tx) => tx.allocateRun(0, 60), 'count'],
    // A slot shorter than an Ethernet header could only be sent as an error: refused when lent.
    ['allocate(0)', (tx) => tx.allocate(0), 'length'],
    ['allocate(13)', (tx) => tx.allocate(13), 'length'],
    ['allocateRun(4, 0)', (tx) => tx.allocateRun(4, 0), 'length'],
  ]
  for (const [what, misuse, option] of misuses) {
    const e = t.throws(() => misuse(tx), { instanceOf: NetringError }, what)
    t.is(e?.code, 'EINVAL', what)
    t.is(e?.option, option, what)
    t.is(tx.stats().pending, 0, `${what}: nothing queued`)
  }
  // Every slot went back: the whole ring can be lent again, and frames still leave, in order.
  const run = tx.allocateRun(16, 60)!
  t.is(run.count, 16, 'every slot is free again')
  run.discard()
  for (let i = 0; i < 3; i++) t.true(tx.send(frame(veth.bMac, veth.aMac, 60, i)))
  const slot = tx.allocate(60)!
  frame(veth.bMac, veth.aMac, 60, 3).copy(slot.data)
  slot.send()
  t.is(await within(tx.drained()), 'resolved')
  t.deepEqual(
    (await collect(rx, 4)).map((p) => seqOf(p)),
    [0, 1, 2, 3],
  )
  t.like(tx.stats(), { sent: 4, rejected: 0, pending: 0 })
})

test('frames of the wrong type are EINVAL naming the option, for send, sendFrames and sendAsync', async (t) => {
  const veth = localVethPair(t)
  using tx = Injector.open(veth.a)
  t.throws(() => tx.send(null as never), { instanceOf: NetringError, code: 'EINVAL', message: /frame/ })
  t.throws(() => tx.sendFrames('x' as never), { instanceOf: NetringError, code: 'EINVAL' })
  const good = frame(veth.bMac, veth.aMac, 60, 0)
  // eslint-disable-next-line no-sparse-arrays
  for (const frames of [[good, null], [good, , good], [good, 'x']] as unknown as Buffer[][]) {
    const e = t.throws(() => tx.sendFrames(frames), { instanceOf: NetringError, code: 'EINVAL' })!
    t.regex(e.option!, /^frames\[1\]$/)
  }
  await t.throwsAsync(tx.sendAsync(undefined as never), { instanceOf: NetringError, code: 'EINVAL' })
  t.is(tx.stats().pending, 0)
})

test('sendFrames with one frame too large throws and queues none of it: a retry sends each frame once', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using tx = Injector.open(veth.a, { frameCount: 16 })
  const frames = [0, 1, 2].map((i) => frame(veth.bMac, veth.aMac, 60, i))
  const e = t.throws(() => tx.sendFrames([...frames, Buffer.alloc(3000)]), { instanceOf: NetringError, code: 'EMSGSIZE' })!
  t.regex(e.message, /frames\[3\]: /)
  t.is(tx.stats().pending, 0, 'nothing queued')
  t.is(tx.sendFrames(frames), 3, 'the retry, without the bad frame')
  t.true(tx.drain(2000))
  t.deepEqual(
    (await collect(rx, 3)).map((p) => seqOf(p)),
    [0, 1, 2],
  )
  t.deepEqual(await collect(rx, 1, { timeoutMs: 300 }), [], 'no duplicates')
})

// Infinity used to abort the process (a panic converting it to a Duration); strings and NaN were
// a plain Error or read as 0.
const TIMEOUTS = `
  const { Capture, Injector } = require('.')
  const [iface, peer] = process.argv.slice(1)
  const rx = Capture.open(peer)
  const tx = Injector.open(iface)
  const f = Buffer.alloc(60, 0xff); f.writeUInt16BE(0x88b5, 12)
  tx.send(f)
  const drained = tx.drain(Infinity)
  const refused = [NaN, -1, '60', { valueOf: () => 60 }, null].map((v) => {
    try { tx.drain(v); return 'accepted' } catch (e) { return e.code + ' ' + e.option }
  })
  const batch = rx.nextBatchBlocking(Infinity)
  tx.close(Infinity)
  console.log(JSON.stringify({ drained, refused, captured: batch !== null, closed: tx.closed }))
  rx.close()
`

test('drain() and close() take Infinity as no limit and refuse other non-numbers; nextBatchBlocking(Infinity) waits', async (t) => {
  const veth = localVethPair(t)
  const child = await runChild(TIMEOUTS, [veth.a, veth.b])
  t.is(child.signal, null, child.stderr)
  t.is(child.code, 0, child.stderr)
  t.deepEqual(child.result, {
    drained: true,
    refused: Array(5).fill('EINVAL timeoutMs'),
    captured: true,
    closed: true,
  })
})

test("writable()'s options are checked: a bad highWaterMark or options value is EINVAL, not Node's TypeError", (t) => {
  const veth = localVethPair(t)
  using tx = Injector.open(veth.a)
  for (const options of [{ highWaterMark: NaN }, { highWaterMark: -1 }, { highWaterMark: '3' }, { highWaterMark: Infinity }, { hwm: 3 }, 5, 'x', null]) {
    const e = t.throws(() => tx.writable(options as never), { instanceOf: NetringError }, JSON.stringify(options))
    t.is(e?.code, 'EINVAL')
  }
  t.is(tx.writable({ highWaterMark: 0 }).writableHighWaterMark, 0)
})
