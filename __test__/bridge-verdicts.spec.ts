// What a bridge callback returns, odd things included: bytes that are no frame (empty, shorter
// than an Ethernet header, a view of a released batch), a Buffer too large for any slot, a view
// of another packet, things that are no verdict at all, and a close() before returning. The
// process never crashes or hangs, and every packet handed to the callback is accounted for:
// forwarded (and then delivered), or counted as dropped, too large, or rejected.

import test from 'ava'
import type { BridgeDirectionStats } from 'netring'

import { runChild } from './helpers/child'
import { localVethPair } from './helpers/net'

/** Every packet the callback saw, in exactly one counter. */
const accountedFor = (s: BridgeDirectionStats) =>
  s.forwarded + s.droppedByCallback + s.droppedTooLarge + s.droppedTruncated + s.droppedRingFull + s.droppedRejected

// A child (a crash or a hang would be its own): a bridge between two veth pairs, ten frames in,
// the callback's third call answered with the odd verdict; prints how run() ended, what
// arrived on the far side, and the stats.
const BRIDGE = `
const { Bridge, Capture, Injector } = require('netring')
const [inA, bridgeA, bridgeB, outB, which, mode] = process.argv.slice(1)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const frame = (n) => {
  const f = Buffer.alloc(80)
  Buffer.from('020000000c02020000000c01', 'hex').copy(f)
  f.writeUInt16BE(0x88b5, 12)
  f.writeUInt32BE(n, 14)
  return f
}
;(async () => {
  const sink = Capture.open(outB, { profile: 'low-latency' })
  const tx = Injector.open(inA)
  const bridge = Bridge.open({ a: bridgeA, b: bridgeB, offload: mode === 'offload' })
  let first
  let calls = 0
  const odd = {
    empty: () => Buffer.alloc(0),
    short: () => Buffer.alloc(13, 1),
    detached: () => first,
    huge: () => Buffer.alloc(1 << 20),
    'another packet': () => first,
    'close, then a Buffer': (p) => (bridge.close(), Buffer.from(p.data)),
    'a string': () => 'forward!',
    'a Promise': () => Promise.resolve('forward'),
    'a Uint16Array': () => new Uint16Array(40),
    'a DataView': () => new DataView(new ArrayBuffer(80)),
    undefined: () => undefined,
    'runSync inside': () => (bridge.runSync(() => 'forward', { iterations: 1 }), 'forward'),
  }[which]
  const controller = new AbortController()
  const running = bridge.run((p) => {
    if (p.protocol !== 0x88b5) return 'drop'
    if (++calls === 1) first = which === 'detached' ? p.data : Buffer.from(p.data)
    return calls === 3 ? odd(p) : 'forward'
  }, { signal: controller.signal })
  let ended = 'running'
  running.then(() => (ended = 'resolved'), (e) => (ended = e.code ?? e.message))
  // The first frame alone, so that its batch is released before the odd answer comes.
  tx.send(frame(0))
  await tx.drained()
  for (let i = 0; i < 200 && calls < 1; i++) await sleep(10)
  for (let i = 1; i < 10; i++) tx.send(frame(i))
  await tx.drained()
  for (let i = 0; i < 300 && calls < 10 && ended === 'running'; i++) await sleep(10)
  controller.abort()
  await running.catch(() => undefined)
  const got = []
  for (let k = 0; k < 50 && got.length < 10; k++) {
    const b = sink.nextBatch()
    if (!b) { await sleep(20); continue }
    for (const p of b) if (p.protocol === 0x88b5) got.push(p.data.readUInt32BE(14))
    b.release()
  }
  const stats = bridge.stats()['a->b']
  bridge.close()
  tx.close()
  sink.close()
  console.log(JSON.stringify({ ended, got, stats, calls }))
})()
`

interface Outcome {
  ended: string
  got: number[]
  stats: BridgeDirectionStats
  calls: number
}

async function bridgeAnswering(t: import('ava').ExecutionContext, which: string, mode: 'offload' | 'plain'): Promise<Outcome> {
  const left = localVethPair(t)
  const right = localVethPair(t)
  const r = await runChild(BRIDGE, [left.a, left.b, right.a, right.b, which, mode], { timeoutMs: 30_000 })
  t.false(r.timedOut, `${which}: no hang`)
  t.is(r.signal, null, `${which}: no crash`)
  t.is(r.code, 0, r.stderr)
  return r.result as Outcome
}

const ALL_BUT_THE_THIRD = [0, 1, 3, 4, 5, 6, 7, 8, 9]

for (const mode of ['offload', 'plain'] as const) {
  test(`bytes that are no frame (empty, 13 bytes, a released view) are counted as rejected; the bridge goes on (${mode})`, async (t) => {
    for (const which of ['empty', 'short', 'detached']) {
      const o = await bridgeAnswering(t, which, mode)
      t.is(o.ended, 'resolved', `${which}: run() goes on`)
      t.deepEqual(o.got, ALL_BUT_THE_THIRD, `${which}: the others all arrived, in order`)
      t.like(o.stats, { forwarded: 9, droppedRejected: 1 }, which)
      t.is(accountedFor(o.stats), o.calls, `${which}: every packet accounted for`)
    }
  })

  test(`a Buffer larger than any frame is counted as too large; a view of another packet is sent as those bytes (${mode})`, async (t) => {
    const huge = await bridgeAnswering(t, 'huge', mode)
    t.is(huge.ended, 'resolved')
    t.deepEqual(huge.got, ALL_BUT_THE_THIRD)
    t.like(huge.stats, { forwarded: 9, droppedTooLarge: 1 })
    const other = await bridgeAnswering(t, 'another packet', mode)
    t.deepEqual(other.got, [0, 1, 0, 3, 4, 5, 6, 7, 8, 9], "the first packet's bytes went out in the third's place")
    t.like(other.stats, { forwarded: 10 })
  })
}

test('answers that are no verdict reject run() with EINVAL; what was forwarded before leaves, the rest counts as dropped', async (t) => {
  for (const which of ['a string', 'a Promise', 'a Uint16Array', 'a DataView', 'undefined']) {
    const o = await bridgeAnswering(t, which, 'offload')
    t.is(o.ended, 'EINVAL', which)
    t.deepEqual(o.got, [0, 1], `${which}: the two forwarded before it arrived`)
    t.is(o.stats.forwarded, 2)
    // The packet answered so, and the rest of its batch (never handed to the callback).
    t.true(o.stats.droppedByCallback >= 1 && accountedFor(o.stats) >= o.calls, `${which}: ${JSON.stringify(o.stats)}`)
  }
})

test('runSync() from inside the callback is EBUSY, as a callback that throws: the batch it is in is not lost', async (t) => {
  const o = await bridgeAnswering(t, 'runSync inside', 'offload')
  t.is(o.ended, 'EBUSY')
  t.deepEqual(o.got, [0, 1], 'the two forwarded before it arrived')
  t.is(o.stats.forwarded, 2)
  t.true(o.stats.droppedByCallback >= 1 && accountedFor(o.stats) >= o.calls, JSON.stringify(o.stats))
})

test('close() inside the callback, then a Buffer: run() resolves, that packet counts as dropped by the callback', async (t) => {
  const o = await bridgeAnswering(t, 'close, then a Buffer', 'offload')
  t.is(o.ended, 'resolved')
  t.deepEqual(o.got, [0, 1])
  t.like(o.stats, { forwarded: 2, droppedByCallback: 1 })
  t.is(accountedFor(o.stats), o.calls)
})

test('run() leaves no wait armed when it ends (aborted, or the callback threw): the process exits by itself', async (t) => {
  const left = localVethPair(t)
  const right = localVethPair(t)
  // The bridge is left open on purpose: only a wait still armed could keep the process alive.
  const r = await runChild(
    `
const { Bridge, Injector } = require('netring')
const [inA, a, b] = process.argv.slice(1)
const f = Buffer.alloc(80); f.writeUInt16BE(0x88b5, 12)
;(async () => {
  const bridge = Bridge.open({ a, b })
  const ended = []
  const aborted = bridge.run(() => 'forward', { signal: AbortSignal.timeout(200) })
  ended.push(await aborted.then(() => 'aborted: resolved'))
  const tx = Injector.open(inA)
  const threw = bridge.run(() => { throw new Error('boom') })
  tx.send(f); tx.flush()
  ended.push(await threw.catch((e) => 'threw: ' + e.message))
  tx.close()
  console.log(JSON.stringify(ended))
})()
`,
    [left.a, left.b, right.a],
    { timeoutMs: 15_000 },
  )
  t.false(r.timedOut, 'the process exited by itself')
  t.is(r.code, 0, r.stderr)
  t.deepEqual(r.result, ['aborted: resolved', 'threw: boom'])
})
