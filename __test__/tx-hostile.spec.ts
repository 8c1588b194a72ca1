// The transmit contract against a hostile user: every frame handed to an Injector or an
// XdpSocket either leaves, or is reported to whoever handed it over, and is counted; nothing done
// from JavaScript crashes the process, hangs it, or loses frames silently. What arrives is read
// by a Capture on the peer; the cases that could crash or hang run in a child process.

import test, { type ExecutionContext } from 'ava'
import { Capture, Injector, NetringError, XdpSocket } from 'netring'

import { runNode, within as withinMs } from './helpers/child'
import { collect, seqOf } from './helpers/collect'
import { frame, localVethPair, sh } from './helpers/net'

type Sender = Injector | XdpSocket

/**
 * A hang is a failure, but this file's tests share one event loop, which a loaded machine (CI
 * runs every file at once) slows by seconds: 30 s before a wait counts as hung.
 */
const within = (p: Promise<unknown>, ms = 30_000) => withinMs(p, ms)

const SENDERS: [string, (iface: string) => Sender][] = [
  ['Injector', (iface) => Injector.open(iface, { frameCount: 16 })],
  ['XdpSocket', (iface) => XdpSocket.open(iface, { mode: 'tx', frameCount: 16, ringSize: 16 })],
]

/** Frames sent, refused by the kernel or withdrawn (an XdpSocket refuses and withdraws none). */
const counted = (s: { sent: number; rejected?: number; withdrawn?: number }) => s.sent + (s.rejected ?? 0) + (s.withdrawn ?? 0)

/** Fills the sender's ring with send() (no flush): the next sendAsync has to wait for room. */
function fill(tx: Sender, dst: Buffer, src: Buffer, from: number): number {
  let n = 0
  while (n < 4096 && tx.send(frame(dst, src, 60, from + n))) n++
  return n
}

/** Writes a good chunk, `chunk`, and a good chunk as one writev: the callback gets `code`, nothing is sent. */
async function refusedWritev(t: ExecutionContext, open: (iface: string) => Sender, bad: [string, unknown, string][], offload = false) {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using tx = open(veth.a)
    let seq = 0
    for (const [what, chunk, code] of bad) {
      const w = offload ? (tx as Injector).writable({ offload }) : tx.writable()
      const closed = new Promise((r) => w.once('close', r))
      const errors: unknown[] = []
      w.on('error', () => {})
      w.cork()
      for (const c of [frame(veth.bMac, veth.aMac, 60, seq++), chunk, frame(veth.bMac, veth.aMac, 60, seq++)]) {
        w.write(c, (e) => errors.push(e ?? null))
      }
      w.uncork()
      await within(closed)
      t.is((errors[0] as NetringError | undefined)?.code, code, `${what}: the writev callback`)
      t.is(tx.stats().pending, 0, `${what}: nothing queued`)
    }
    await tx.drained()
    t.is(tx.stats().sent, 0, 'nothing sent')
    t.deepEqual(await collect(rx, 1, { timeoutMs: 300 }), [], 'nothing arrived')
}

for (const [kind, open] of SENDERS) {
  test(`${kind}: a sendAsync frame that waits for room is copied on entry: changing or detaching it afterwards changes nothing`, async (t) => {
    const veth = localVethPair(t)
    using rx = Capture.open(veth.b)
    using tx = open(veth.a)
    // A run of the sender's own slots, lent, then the rest of the ring filled.
    const run = tx.allocateRun(2, 60)!
    frame(veth.bMac, veth.aMac, 60, 0).copy(run.slot(0))
    frame(veth.bMac, veth.aMac, 60, 1).copy(run.slot(1))
    const queued = run.count + fill(tx, veth.bMac, veth.aMac, run.count)
    const mutated = frame(veth.bMac, veth.aMac, 60, 1000)
    const expected = Buffer.from(mutated)
    // A view of an ArrayBuffer transferred away right after the call: its bytes are gone.
    const detachedSource = frame(veth.bMac, veth.aMac, 60, 1001)
    const ab = new ArrayBuffer(60)
    const detached = new Uint8Array(ab)
    detached.set(detachedSource)
    // A view of the lent run's slot: sent (and so detached, then reused) right after the call.
    const slotView = run.slot(1)
    const slotBytes = Buffer.from(slotView)
    const sends = [tx.sendAsync(mutated), tx.sendAsync(detached), tx.sendAsync(slotView)]
    mutated.fill(0xee, 14)
    structuredClone(ab, { transfer: [ab] })
    run.send()
    t.is(detached.byteLength, 0)
    t.is(slotView.byteLength, 0)
    await Promise.all(sends)
    const got = await collect(rx, queued + 3)
    t.is(got.length, queued + 3)
    // (An XdpSocket sends the run when it is sent, after the frames queued behind it; an
    // Injector in the order of the slots.)
    t.deepEqual(
      got
        .slice(0, queued)
        .map((p) => seqOf(p))
        .sort((x, y) => x - y),
      Array.from({ length: queued }, (_, i) => i),
    )
    t.true(got[queued]?.data.equals(expected), 'the bytes given, not the bytes changed after the call')
    t.true(got[queued + 1]?.data.equals(detachedSource), 'the bytes given, though their buffer was detached after the call')
    t.true(got[queued + 2]?.data.equals(slotBytes), 'the bytes of the lent slot, though it was sent and reused after the call')
  })

  test(`${kind}: writev with one too long chunk refuses them all: nothing is queued and the callback gets the error`, async (t) => {
    await refusedWritev(t, open, [['too long', Buffer.alloc(3000), 'EMSGSIZE']])
  })

  if (kind === 'Injector') {
    test('Injector: writev with one chunk whose offload metadata does not fit its frame refuses them all', async (t) => {
      const data = frame(Buffer.alloc(6, 0xff), Buffer.alloc(6, 2), 60, 7)
      const misfit = { data, offload: { needsCsum: true, csumStart: 100, csumOffset: 6 } }
      await refusedWritev(t, (iface) => Injector.open(iface, { frameCount: 16, offload: true }), [['csumStart past the frame', misfit, 'EINVAL']], true)
    })
  }

  test(`${kind}: writev with one chunk that is no frame refuses them all: nothing is queued and the callback gets the error`, async (t) => {
    await refusedWritev(t, open, [
      ['not a Buffer', 'frame', 'EINVAL'],
      ['shorter than an Ethernet header', Buffer.alloc(10), 'EINVAL'],
    ])
  })


  test(`${kind}: close() with chunks in a writable and many sendAsync pending: each is sent or rejects, and the counts add up`, async (t) => {
    const veth = localVethPair(t)
    using rx = Capture.open(veth.b, { profile: 'high-throughput' })
    const tx = open(veth.a)
    const sendAsyncs = 300
    const writes = 300
    let resolved = 0
    const rejected: string[] = []
    const settled = Array.from({ length: sendAsyncs }, (_, i) =>
      tx.sendAsync(frame(veth.bMac, veth.aMac, 60, i)).then(
        () => resolved++,
        (e: NetringError) => rejected.push(e.code),
      ),
    )
    const w = tx.writable({ highWaterMark: 16 })
    const closed = new Promise((r) => w.once('close', r))
    w.on('error', () => {})
    const callbacks: (string | null)[] = []
    for (let i = 0; i < writes; i++) w.write(frame(veth.bMac, veth.aMac, 60, sendAsyncs + i), (e) => callbacks.push(e ? ((e as NetringError).code ?? e.name) : null))
    tx.close(0)
    t.is(await within(Promise.all(settled)), 'resolved', 'every sendAsync settled')
    t.is(await within(closed), 'resolved')
    t.is(callbacks.length, writes, 'every write callback called')
    t.true(rejected.every((c) => c === 'EBADF'), rejected.join())
    const writesOk = callbacks.filter((c) => c === null).length
    const got = await collect(rx, resolved + writesOk + 1, { timeoutMs: 1500 })
    t.is(got.length, resolved + writesOk, 'what arrived is what was reported sent')
    // The counts after close().
    {
      const stats = tx.stats()
      t.is(stats.pending, 0, 'nothing pending after close')
      // A write the Writable still held when the stream failed never reached the socket, and its
      // callback gets the same error as one that did: the count lies between the two.
      t.true(counted(stats) >= resolved + rejected.length + writesOk, 'every frame handed over is counted')
      t.true(counted(stats) <= sendAsyncs + writes, 'no frame counted twice')
      t.is(stats.sent, resolved + writesOk, 'what was sent is what resolved')
    }
  })

  test(`${kind}: 10 000 pending sendAsync then close(): every promise settles, the process exits`, async (t) => {
    const veth = localVethPair(t)
    const r = await runNode(`
      const { Injector, XdpSocket } = require('netring')
      const kind = ${JSON.stringify(kind)}
      const tx = ${kind === 'Injector' ? `Injector.open('${veth.a}', { frameCount: 16 })` : `XdpSocket.open('${veth.a}', { mode: 'tx', frameCount: 16, ringSize: 16 })`}
      const f = Buffer.alloc(60, 0xff); f.writeUInt16BE(0x88b5, 12)
      let ok = 0, bad = 0
      const all = Array.from({ length: 10000 }, () => tx.sendAsync(f).then(() => ok++, () => bad++))
      tx.close(0)
      Promise.all(all).then(() => {
        let drained
        tx.drained().then(() => (drained = 'resolved'), (e) => (drained = e.code)).then(() => {
          const s = tx.stats()
          console.log(JSON.stringify({ total: ok + bad, drained, sentMatches: s.sent === ok, counted: s.sent + (s.withdrawn ?? 0) + (s.rejected ?? 0) === 10000, pending: s.pending }))
        })
      })
    `)
    t.false(r.timedOut, r.stderr)
    t.is(r.signal, null, r.stderr)
    t.is(r.code, 0, r.stderr)
    t.deepEqual(r.result, { total: 10000, drained: 'EBADF', sentMatches: true, counted: true, pending: 0 })
  })

  test(`${kind}: destroy() and end() on a writable whose ring is full: every callback is called, what was sent arrives`, async (t) => {
    const veth = localVethPair(t)
    using rx = Capture.open(veth.b, { profile: 'high-throughput' })
    using tx = open(veth.a)
    const queued = fill(tx, veth.bMac, veth.aMac, 0)
    // destroy() while chunks wait for room.
    const w1 = tx.writable({ highWaterMark: 8 })
    const w1Closed = new Promise((r) => w1.once('close', r))
    w1.on('error', () => {})
    const cb1: (string | null)[] = []
    for (let i = 0; i < 40; i++) w1.write(frame(veth.bMac, veth.aMac, 60, 100 + i), (e) => cb1.push(e ? ((e as NodeJS.ErrnoException).code ?? 'error') : null))
    w1.destroy()
    // end() while chunks wait for room: 'finish' once all of it was sent.
    const w2 = tx.writable({ highWaterMark: 8 })
    w2.on('error', () => {})
    const cb2: (string | null)[] = []
    for (let i = 0; i < 40; i++) w2.write(frame(veth.bMac, veth.aMac, 60, 200 + i), (e) => cb2.push(e ? 'error' : null))
    const finished = new Promise((r) => w2.once('finish', r))
    w2.end()
    // A generous bound: the other tests of this file keep the event loop busy.
    t.is(await within(finished), 'resolved', "end(): 'finish'")
    t.is(await within(tx.drained()), 'resolved')
    t.is(await within(w1Closed), 'resolved')
    t.is(cb1.length, 40, 'destroy(): every write callback called')
    t.deepEqual(cb2, Array(40).fill(null))
    const sentByW1 = cb1.filter((c) => c === null).length
    const s = tx.stats()
    t.like(s, { pending: 0, sent: queued + sentByW1 + 40 })
    const got = await collect(rx, s.sent)
    t.is(got.length, s.sent)
    t.deepEqual(got.slice(-40).map((p) => seqOf(p)), Array.from({ length: 40 }, (_, i) => 200 + i))
  })

  test(`${kind}: drained(), drain(), flush(), sendAsync() and writable writes after close() are EBADF, never a hang`, async (t) => {
    const veth = localVethPair(t)
    const tx = open(veth.a)
    tx.close()
    const drained = tx.drained()
    t.is(await within(drained.catch(() => undefined)), 'resolved')
    await t.throwsAsync(drained, { instanceOf: NetringError, code: 'EBADF' })
    t.throws(() => tx.drain(), { code: 'EBADF' })
    t.throws(() => tx.flush(), { code: 'EBADF' })
    await t.throwsAsync(tx.sendAsync(Buffer.alloc(60)), { code: 'EBADF' })
    const w = tx.writable()
    const error = new Promise<Error>((r) => w.once('error', r))
    w.write(Buffer.alloc(60))
    t.is(((await error) as NetringError).code, 'EBADF')
  })

  test(`${kind}: NaN, Infinity, -1 and 2**40 as lengths, counts and timeouts of every TX method are EINVAL (Infinity: no limit for a timeout)`, async (t) => {
    const veth = localVethPair(t)
    const r = await runNode(`
      const { Injector, XdpSocket } = require('netring')
      const kind = ${JSON.stringify(kind)}
      const tx = kind === 'Injector' ? Injector.open('${veth.a}', { frameCount: 16 }) : XdpSocket.open('${veth.a}', { mode: 'tx', frameCount: 16, ringSize: 16 })
      const out = {}
      const attempt = (name, fn) => { try { fn(); out[name] = 'accepted' } catch (e) { out[name] = e.code + ' ' + e.option } }
      for (const v of [NaN, Infinity, -1, 2 ** 40]) {
        attempt('allocate(' + v + ')', () => tx.allocate(v))
        attempt('allocateRun(' + v + ', 60)', () => tx.allocateRun(v, 60))
        attempt('allocateRun(2, ' + v + ')', () => tx.allocateRun(2, v))
        attempt('slot.send(' + v + ')', () => tx.allocate(60).send(v))
        attempt('run.send(' + v + ')', () => tx.allocateRun(2, 60).send(v))
        attempt('run.send(2, ' + v + ')', () => tx.allocateRun(2, 60).send(2, v))
        attempt('run.send(2, [60, ' + v + '])', () => tx.allocateRun(2, 60).send(2, [60, v]))
        attempt('writable({ highWaterMark: ' + v + ' })', () => tx.writable({ highWaterMark: v }))
        attempt('drain(' + v + ')', () => tx.drain(v))
        attempt('close(' + v + ')', () => { if (v !== Infinity && v !== 2 ** 40) tx.close(v); else throw { code: 'skip' } })
      }
      const pending = tx.stats().pending
      tx.close(Infinity)
      console.log(JSON.stringify({ out, pending, closed: tx.closed }))
    `)
    t.is(r.signal, null, r.stderr)
    t.is(r.code, 0, r.stderr)
    const { out, pending, closed } = r.result as { out: Record<string, string>; pending: number; closed: boolean }
    t.is(pending, 0, 'nothing queued by any of it')
    t.true(closed)
    for (const [call, answer] of Object.entries(out)) {
      if (/^drain\((Infinity|1099511627776)\)$/.test(call)) t.is(answer, 'accepted', call)
      else if (call.startsWith('close(')) t.regex(answer, /^(EINVAL drainTimeoutMs|skip undefined)$/, call)
      else t.regex(answer, /^EINVAL (length|count|lengths|writable\.highWaterMark|timeoutMs)$/, call)
    }
  })
}

// An XdpSocket refuses nothing once a frame is queued, and its failed kicks have owners: the
// error nobody owns is an Injector's frame queued with send() and refused at the flush.
test("Injector: an 'error' listener that throws disturbs nothing: its exception surfaces once, the queue goes on", async (t) => {
  const veth = localVethPair(t)
  const r = await runNode(`
    const { execFileSync } = require('node:child_process')
    const { Injector } = require('netring')
    const tx = Injector.open('${veth.a}', { frameCount: 16 })
    const f = (n) => { const b = Buffer.alloc(n, 0xff); b.writeUInt16BE(0x88b5, 12); return b }
    const uncaught = []
    process.on('uncaughtException', (e) => uncaught.push(e.message))
    const heard = []
    tx.on('error', (e) => { heard.push(e.code ?? e.message); throw new Error('thrown by the listener') })
    // Refused at the flush that sendAsync starts: the MTU shrank after it was queued.
    tx.send(f(1000))
    const sends = Array.from({ length: 100 }, () => tx.sendAsync(f(60)).then(() => 'sent', (e) => e.message))
    execFileSync('ip', ['link', 'set', '${veth.a}', 'mtu', '500'])
    Promise.all(sends).then((results) => setTimeout(() => {
      const s = tx.stats()
      console.log(JSON.stringify({ sent: results.filter((r) => r === 'sent').length, other: [...new Set(results.filter((r) => r !== 'sent'))], heard, uncaught, stats: s }))
      tx.close()
    }, 100))
  `)
  t.false(r.timedOut, r.stderr)
  t.is(r.signal, null, r.stderr)
  t.is(r.code, 0, r.stderr)
  t.deepEqual(r.result, {
    sent: 100,
    other: [],
    heard: ['EMSGSIZE'],
    uncaught: ['thrown by the listener'],
    stats: { sent: 100, rejected: 1, withdrawn: 0, pending: 0 },
  })
})

test('Injector: hostile offload metadata (sparse arrays, Proxies, throwing getters) throws before anything is queued', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using tx = Injector.open(veth.a, { frameCount: 16, offload: true })
  const f = (seq: number) => frame(veth.bMac, veth.aMac, 60, seq)
  const throwingGetter = {
    get gsoSize(): number {
      throw new Error('getter')
    },
  }
  const throwingProxy = new Proxy(
    {},
    {
      ownKeys() {
        throw new Error('ownKeys trap')
      },
    },
  )
  const cases: [string, () => unknown][] = [
    ['send with a throwing getter', () => tx.send(f(0), { offload: throwingGetter as never })],
    ['send with a Proxy whose trap throws', () => tx.send(f(0), { offload: throwingProxy as never })],
    ['sendFrames with a throwing getter in the list', () => tx.sendFrames([f(0), f(1)], { offload: [{}, throwingGetter as never] })],
    ['run.send with a Proxy whose trap throws', () => tx.allocateRun(2, 60)!.send(2, 60, { offload: [{}, throwingProxy as never] })],
    ['slot.send with a throwing getter', () => tx.allocate(60)!.send(60, { offload: throwingGetter as never })],
  ]
  for (const [what, misuse] of cases) {
    t.throws(misuse, undefined, what)
    t.is(tx.stats().pending, 0, `${what}: nothing queued`)
  }
  await t.throwsAsync(tx.sendAsync(f(0), { offload: throwingGetter as never }), undefined, 'sendAsync')
  t.is(tx.stats().pending, 0)
  // A sparse list: a hole is a frame without metadata.
  // eslint-disable-next-line no-sparse-arrays
  t.is(tx.sendFrames([f(0), f(1)], { offload: [, {}] as never }), 2)
  t.is(await within(tx.drained()), 'resolved')
  t.deepEqual(
    (await collect(rx, 2)).map((p) => seqOf(p)),
    [0, 1],
  )
})

for (const [kind, open] of SENDERS) {
  test(`${kind}: detached Buffers, one Buffer twice, views of its own lent run, a released batch's packet: each sent once or refused`, async (t) => {
    const veth = localVethPair(t)
    const r = await runNode(`
      const { Capture, Injector, XdpSocket } = require('netring')
      const rx = Capture.open('${veth.b}')
      const tx = ${kind === 'Injector' ? `Injector.open('${veth.a}', { frameCount: 16 })` : `XdpSocket.open('${veth.a}', { mode: 'tx', frameCount: 16, ringSize: 16 })`}
      const f = (seq) => { const b = Buffer.alloc(60, seq); Buffer.from('${veth.bMac.toString('hex')}', 'hex').copy(b); b.writeUInt16BE(0x88b5, 12); b.writeUInt32BE(seq, 14); return b }
      const out = {}
      const attempt = (name, fn) => { try { out[name] = fn() } catch (e) { out[name] = e.code } }
      const ab = new ArrayBuffer(60); const view = new Uint8Array(ab); view.set(f(9)); structuredClone(ab, { transfer: [ab] })
      attempt('send of a detached buffer', () => tx.send(view))
      const twice = f(1)
      attempt('sendFrames with one Buffer twice', () => tx.sendFrames([twice, twice]))
      const run = tx.allocateRun(2, 60)
      f(2).copy(run.slot(0)); f(3).copy(run.slot(1))
      attempt('sendFrames of views of its own lent run', () => tx.sendFrames([run.slot(0), run.slot(1)]))
      run.send()
      tx.drain(1000)
      const seqs = []
      const read = (b) => { for (const p of b) if (p.data.readUInt16BE(12) === 0x88b5) seqs.push(p.data.readUInt32BE(14)) }
      const captured = rx.nextBatchBlocking(1000)
      read(captured)
      const stale = [...captured].find((p) => p.data.readUInt16BE(12) === 0x88b5).data
      captured.release()
      attempt('send of a released batch packet', () => tx.send(stale))
      tx.drain(1000)
      for (let i = 0; i < 10 && seqs.length < 6; i++) {
        const b = rx.nextBatchBlocking(200)
        if (b) { read(b); b.release() }
      }
      const s = tx.stats()
      console.log(JSON.stringify({ out, seqs, sent: s.sent, pending: s.pending }))
      tx.close(); rx.close()
    `)
    t.is(r.signal, null, r.stderr)
    t.is(r.code, 0, r.stderr)
    t.deepEqual(r.result, {
      out: {
        'send of a detached buffer': 'EINVAL',
        'sendFrames with one Buffer twice': 2,
        'sendFrames of views of its own lent run': 2,
        'send of a released batch packet': 'EINVAL',
      },
      seqs: [1, 1, 2, 3, 2, 3],
      sent: 6,
      pending: 0,
    })
  })

  test(`${kind}: drained() waits for the sendAsync frames still waiting for room`, async (t) => {
    const veth = localVethPair(t)
    using rx = Capture.open(veth.b)
    using tx = open(veth.a)
    let sent = 0
    const all = Array.from({ length: 100 }, (_, i) => tx.sendAsync(frame(veth.bMac, veth.aMac, 60, i)).then(() => sent++))
    // A failed test closes the socket, which rejects what is left: not an unhandled rejection.
    for (const p of all) p.catch(() => {})
    t.is(await within(tx.drained()), 'resolved')
    t.is(sent, 100, 'every frame handed over was sent when drained() resolved')
    t.is(tx.stats().pending, 0)
    await Promise.all(all)
    t.is((await collect(rx, 100)).length, 100)
  })
}

// A hole in the list is a frame that is missing (EINVAL naming it), and a refused frame anywhere
// in the list means none of it is queued.
for (const [kind, open] of SENDERS) {
  test(`${kind}: sendFrames with one frame refused (detached, too long) throws and queues none of it`, async (t) => {
    const veth = localVethPair(t)
    using rx = Capture.open(veth.b)
    using tx = open(veth.a)
    const detached = new Uint8Array(new ArrayBuffer(60))
    structuredClone(detached.buffer, { transfer: [detached.buffer] })
    for (const [bad, code] of [
      [detached, 'EINVAL'],
      [Buffer.alloc(3000), 'EMSGSIZE'],
    ] as const) {
      t.throws(() => tx.sendFrames([frame(veth.bMac, veth.aMac, 60, 0), bad]), { instanceOf: NetringError, code })
      t.is(tx.stats().pending, 0, 'nothing queued')
    }
    await tx.drained()
    t.is(tx.stats().sent, 0, 'nothing sent')
    t.deepEqual(await collect(rx, 1, { timeoutMs: 300 }), [], 'nothing arrived')
  })

  test(`${kind}: sendFrames with a hole is EINVAL naming the frame, and queues nothing`, (t) => {
    const veth = localVethPair(t)
    using tx = open(veth.a)
    const f = frame(veth.bMac, veth.aMac, 60, 0)
    // eslint-disable-next-line no-sparse-arrays
    t.throws(() => tx.sendFrames([f, , f] as Buffer[]), { instanceOf: NetringError, code: 'EINVAL', message: /frames\[1\]/ })
    t.is(tx.stats().pending, 0)
  })
}

test('Injector: stats() after close() gives the final counts, frames left in the ring counted as withdrawn', (t) => {
  const veth = localVethPair(t)
  const tx = Injector.open(veth.a, { frameCount: 16 })
  sh('ip', ['link', 'set', veth.a, 'down'])
  const queued = fill(tx, veth.bMac, veth.aMac, 0)
  t.throws(() => tx.close(0), { code: 'ENETDOWN' })
  t.true(tx.closed)
  t.deepEqual(tx.stats(), { sent: 0, rejected: 0, withdrawn: queued, pending: 0 })
})

test('XdpSocket: stats() after close() gives the final counts', (t) => {
  const veth = localVethPair(t)
  const xsk = XdpSocket.open(veth.a, { mode: 'tx', frameCount: 16, ringSize: 16 })
  const queued = fill(xsk, veth.bMac, veth.aMac, 0)
  xsk.close()
  t.like(xsk.stats(), { sent: queued, pending: 0, withdrawn: 0 })
})

test('XdpSocket: frames a close() leaves in the TX ring (link down) are counted as withdrawn', (t) => {
  const veth = localVethPair(t)
  const xsk = XdpSocket.open(veth.a, { mode: 'tx', frameCount: 16, ringSize: 16 })
  sh('ip', ['link', 'set', veth.a, 'down'])
  const queued = fill(xsk, veth.bMac, veth.aMac, 0)
  try {
    xsk.close(0)
  } catch {
    // The kick may fail on a link that is down; the socket closes either way.
  }
  t.true(xsk.closed)
  const s = xsk.stats()
  t.is(s.pending, 0)
  t.is(s.sent + s.withdrawn, queued, JSON.stringify(s))
  t.true(s.withdrawn > 0, JSON.stringify(s))
})
