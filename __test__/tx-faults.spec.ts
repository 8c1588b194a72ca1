// Transmit under faults: a link that goes down or away under a sender, an MTU that shrinks
// between queueing and flushing, slots discarded or abandoned in the middle of the ring. Every
// frame handed over leaves or is reported to whoever handed it over; background work never
// throws where nobody can catch it; nothing holds the frames behind it.

import test from 'ava'
import { Capture, Injector, NetringError } from 'netring'

import { runChild, within } from './helpers/child'
import { collect, seqOf } from './helpers/collect'
import { frame, localVethPair, sh } from './helpers/net'

const LINK_ERRORS = ['ENETDOWN', 'ENXIO', 'ENODEV']

// The child sends with no 'error' listener and takes the link down (or deletes it) after 50
// frames: the process must survive and the caller get the error where it awaits.
const SENDER = `
const { execFileSync } = require('node:child_process')
const { Readable } = require('node:stream')
const { pipeline } = require('node:stream/promises')
const { Injector } = require('netring')
const [iface, how, via] = process.argv.slice(1)
const tx = Injector.open(iface, { frameCount: 16 })
const f = Buffer.alloc(60, 0xff)
f.writeUInt16BE(0x88b5, 12)
const cut = () => execFileSync('ip', how === 'delete' ? ['link', 'del', iface] : ['link', 'set', iface, 'down'])
async function viaSendAsync() {
  for (let i = 0; i < 20000; i++) {
    if (i === 50) cut()
    await tx.sendAsync(f)
  }
}
async function viaPipeline() {
  function* frames() {
    for (let i = 0; i < 20000; i++) {
      if (i === 50) cut()
      yield f
    }
  }
  await pipeline(Readable.from(frames()), tx.writable())
}
;(via === 'pipeline' ? viaPipeline() : viaSendAsync()).then(
  () => console.log(JSON.stringify({ caught: null })),
  (e) => console.log(JSON.stringify({ caught: { name: e.name, code: e.code, isNetringError: e instanceof require('netring').NetringError } })),
)
`

for (const how of ['down', 'delete'] as const) {
  for (const via of ['sendAsync', 'pipeline'] as const) {
    test(`link ${how === 'down' ? 'down' : 'deleted'} under ${via === 'sendAsync' ? 'await sendAsync' : 'pipeline(source, tx.writable())'}: the caller gets the error, the process survives`, async (t) => {
      const veth = localVethPair(t)
      const child = await runChild(SENDER, [veth.a, how, via])
      t.is(child.signal, null, child.stderr)
      t.is(child.code, 0, child.stderr)
      const { caught } = child.result as { caught: { name: string; code: string; isNetringError: boolean } | null }
      t.truthy(caught, 'the send failed')
      t.true(caught!.isNetringError, caught!.name)
      t.true(LINK_ERRORS.includes(caught!.code), caught!.code)
    })
  }
}

test('a frame refused at flush (the MTU shrank) rejects its own promise; the frames behind it leave', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using tx = Injector.open(veth.a)
  // Queued in this tick, flushed in a later one: the MTU shrinks in between.
  const sends = [tx.sendAsync(frame(veth.bMac, veth.aMac, 1000, 1)), tx.sendAsync(frame(veth.bMac, veth.aMac, 100, 2)), tx.sendAsync(frame(veth.bMac, veth.aMac, 100, 3))]
  sh('ip', ['link', 'set', veth.a, 'mtu', '500'])
  const [big, ...small] = await Promise.allSettled(sends)
  t.is(big.status, 'rejected')
  t.like((big as PromiseRejectedResult).reason, { name: 'NetringError', code: 'EMSGSIZE' })
  t.deepEqual(
    small.map((s) => s.status),
    ['fulfilled', 'fulfilled'],
  )
  t.deepEqual(
    (await collect(rx, 2)).map((p) => seqOf(p)),
    [2, 3],
    'without any other frame sent',
  )
  t.like(tx.stats(), { sent: 2, rejected: 1, pending: 0 })
})

test('a refused frame nobody owns, with no error listener, is thrown by the next call', (t) => {
  const veth = localVethPair(t)
  using tx = Injector.open(veth.a)
  t.true(tx.send(frame(veth.bMac, veth.aMac, 1000, 1)))
  t.true(tx.send(frame(veth.bMac, veth.aMac, 100, 2)))
  sh('ip', ['link', 'set', veth.a, 'mtu', '500'])
  t.is(tx.flush(), 2)
  t.like(tx.stats(), { sent: 1, rejected: 1, pending: 0 })
  const e = t.throws(() => tx.send(frame(veth.bMac, veth.aMac, 100, 3)), { instanceOf: NetringError, code: 'EMSGSIZE' })!
  t.regex(e.message, /refused a queued frame/)
  t.is(tx.stats().pending, 0, 'the call that threw queued nothing')
  t.true(tx.send(frame(veth.bMac, veth.aMac, 100, 3)), 'reported once')
  t.true(tx.drain(2000))
})

test('a slot discarded before a later one was sent does not hold it: drained() resolves, the frame leaves', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using tx = Injector.open(veth.a, { frameCount: 8 })
  const first = tx.allocate(80)!
  const second = tx.allocate(80)!
  first.discard()
  frame(veth.bMac, veth.aMac, 80, 2).copy(second.data)
  second.send()
  t.is(await within(tx.drained()), 'resolved')
  t.deepEqual(
    (await collect(rx, 1)).map((p) => seqOf(p)),
    [2],
  )
  t.like(tx.stats(), { sent: 1, pending: 0 })
})

test('close() gives back a slot still lent, so the frame queued after it leaves', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  const tx = Injector.open(veth.a, { frameCount: 8 })
  const open = tx.allocate(80)!
  t.true(tx.send(frame(veth.bMac, veth.aMac, 80, 5)))
  tx.close()
  t.is(open.data.byteLength, 0, 'the lent buffer is detached')
  t.deepEqual(
    (await collect(rx, 1)).map((p) => seqOf(p)),
    [5],
  )
})

const ABANDONED = `
const { Injector } = require('netring')
const [iface] = process.argv.slice(1)
const tx = Injector.open(iface, { frameCount: 8 })
const f = Buffer.alloc(80, 0xff)
f.writeUInt16BE(0x88b5, 12)
;(() => { tx.allocate(80); tx.allocateRun(2, 80) })() // lent, then dropped
tx.send(f)
const deadline = setTimeout(() => { console.log(JSON.stringify({ drained: false, stats: tx.stats() })); process.exit(0) }, 10000)
;(async () => {
  // The finalizers give the slots back once the collector has run and the loop turned.
  for (let i = 0; i < 20 && tx.stats().pending > 0; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 50)); tx.flush() }
  await tx.drained()
  clearTimeout(deadline)
  console.log(JSON.stringify({ drained: true, stats: tx.stats() }))
  tx.close()
})()
`

test('slots dropped without send() or discard() are given back when collected: the frame after them leaves', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  const child = await runChild(ABANDONED, [veth.a], { nodeArgs: ['--expose-gc'] })
  t.is(child.signal, null, child.stderr)
  t.is(child.code, 0, child.stderr)
  t.like(child.result, { drained: true, stats: { sent: 1, pending: 0 } }, child.stdout)
  t.is((await collect(rx, 1)).length, 1)
})

test("close() from an 'error' listener while close() drains: one 'close', no throw, the good frames leave", async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  const tx = Injector.open(veth.a)
  let closes = 0
  tx.on('close', () => closes++)
  const errors: string[] = []
  tx.on('error', (e) => {
    errors.push((e as NetringError).code)
    tx.close()
  })
  t.true(tx.send(frame(veth.bMac, veth.aMac, 1000, 1)))
  t.true(tx.send(frame(veth.bMac, veth.aMac, 100, 2)))
  sh('ip', ['link', 'set', veth.a, 'mtu', '500'])
  t.notThrows(() => tx.close())
  t.true(tx.closed)
  t.is(closes, 1)
  t.deepEqual(errors, ['EMSGSIZE'])
  t.deepEqual(
    (await collect(rx, 1)).map((p) => seqOf(p)),
    [2],
  )
})

// The fallback timer of the drain used to stay armed for a second after the injector closed.
const DISPOSED = `
  const { Injector } = require('.')
  ;(async () => {
    const tx = Injector.open(process.argv[1])
    await tx[Symbol.asyncDispose]()
    const timers = process.getActiveResourcesInfo().filter((r) => r === 'Timeout')
    console.log(JSON.stringify({ closed: tx.closed, timers: timers.length }))
  })()
`

test('[Symbol.asyncDispose]() leaves no timer behind to keep the process alive', async (t) => {
  const veth = localVethPair(t)
  const child = await runChild(DISPOSED, [veth.a])
  t.is(child.code, 0, child.stderr)
  t.deepEqual(child.result, { closed: true, timers: 0 })
})
