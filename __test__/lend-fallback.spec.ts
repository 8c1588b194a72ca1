// Node >= 22 without a working ArrayBuffer.prototype.transfer when netring loads (src/lent_buffer.rs,
// `Lending::copies_only`): ring memory is lent as copies that a take back leaves attached, since
// napi_detach_arraybuffer (and Node's exit hook on an external buffer) abort the process on a
// buffer marked with markAsUntransferable. Every lending class is used with every lent buffer
// marked, in a child under Node 24: Capture batches, Injector slots and runs (send, discard),
// XdpSocket RX batches and TX slots and runs. Expected: no abort (also at exit, with marked
// buffers still lent), `info.copyMode` true from the start (also on a socket that only sends),
// the bytes sent arrive byte-exact (a slot's writes are what is sent; writes after send() change
// nothing), and memory a view still shows after release is never written again.

import test from 'ava'

import { lastJson, node24, runChild, runtimes } from './helpers/child'
import { localVethPair } from './helpers/net'

const major = (execPath: string) => (execPath === node24 ? 24 : Number(process.versions.node.split('.')[0]))
const modern = runtimes.filter(([, execPath]) => major(execPath) >= 22)

const spoilers: Record<string, string> = {
  deleted: 'delete ArrayBuffer.prototype.transfer',
  'behind a getter that throws': "Object.defineProperty(ArrayBuffer.prototype, 'transfer', { get() { throw new Error('no') }, configurable: true })",
  // A polyfill forced over the real one: copies, and detaches the original with a transfer list.
  'a copying polyfill': `ArrayBuffer.prototype.transfer = function (length = this.byteLength) {
      const c = new ArrayBuffer(length)
      new Uint8Array(c).set(new Uint8Array(this, 0, Math.min(length, this.byteLength)))
      try { structuredClone(this, { transfer: [this] }) } catch {}
      return c
    }`,
}

const body = `
  const { Capture, Injector, XdpSocket } = require('netring')
  const { markAsUntransferable } = require('node:worker_threads')
  const [a, b] = process.argv.slice(1)
  const mk = (seq, len = 100) => {
    const f = Buffer.alloc(len); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12); f.writeUInt32BE(seq, 14)
    for (let i = 18; i < len; i++) f[i] = (i * 7 + seq) & 0xff
    return f
  }
  const out = { errors: [] }
  const expected = new Map()
  const note = (e) => out.errors.push(String(e && (e.code || e.message)))
  const kept = [] // [view, snapshot]: never written again
  const keep = (view) => kept.push([view, Buffer.from(view)])

  // ---- Capture and Injector ----
  const cap = Capture.open(b, { blockTimeoutMs: 1, filter: 'ether proto 0x88b5' })
  const inj = Injector.open(a)
  out.captureCopyMode = cap.info.copyMode
  try {
    const slot = inj.allocate(100)
    markAsUntransferable(slot.data.buffer)
    expected.set(1, mk(1)); mk(1).copy(slot.data); slot.send()
    slot.data.fill(0xee) // after send(): changes nothing sent
    const run = inj.allocateRun(3, 100)
    markAsUntransferable(run.slot(0).buffer)
    for (let i = 0; i < 3; i++) { expected.set(2 + i, mk(2 + i)); mk(2 + i).copy(run.slot(i)) }
    const views = [0, 1, 2].map((i) => run.slot(i))
    run.send(2)
    expected.delete(4)
    for (const v of views) v.fill(0xee)
    const gone = inj.allocate(100); markAsUntransferable(gone.data.buffer); mk(99).copy(gone.data); gone.discard()
    expected.set(5, mk(5)); inj.send(mk(5))
    inj.drain(1000)
  } catch (e) { note(e) }
  const seen = []
  let exact = true
  for (let i = 0; i < 50 && seen.length < 4; i++) {
    let batch
    try { batch = cap.nextBatchBlocking(100) } catch (e) { note(e); break }
    if (!batch) continue
    for (const p of batch) {
      markAsUntransferable(p.data.buffer)
      const seq = p.data.readUInt32BE(14)
      seen.push(seq)
      if (!expected.get(seq)?.equals(p.data)) exact = false
      keep(p.data)
    }
    try { batch.release() } catch (e) { note(e) }
  }
  out.capture = { seen, exact, closed: cap.closed }
  // more traffic through the ring: what was kept must not change
  try { for (let i = 0; i < 64; i++) inj.send(mk(1000 + i)); inj.drain(1000) } catch (e) { note(e) }
  for (let i = 0; i < 20; i++) { try { const batch = cap.nextBatchBlocking(20); if (batch) batch.release() } catch (e) { note(e); break } }
  // exit with a marked Capture batch and Injector slot still lent
  try {
    inj.send(mk(2000)); inj.drain(1000)
    let held = null
    for (let i = 0; i < 50 && !held?.length; i++) held = cap.nextBatchBlocking(100)
    if (held?.length) markAsUntransferable(held.at(0).data.buffer)
    const heldSlot = inj.allocate(100); markAsUntransferable(heldSlot.data.buffer)
    globalThis.hold = [cap, inj, held, heldSlot]
  } catch (e) { note(e) }

  // ---- XdpSocket on the same pair ----
  const rx = XdpSocket.open(b, { mode: 'rx', frameCount: 64, ringSize: 64, batchSize: 16 })
  const tx = XdpSocket.open(a, { mode: 'tx' })
  globalThis.sockets = [rx, tx]
  out.xdpCopyMode = [rx.info.copyMode, tx.info.copyMode]
  expected.clear()
  try {
    const slot = tx.allocate(200)
    markAsUntransferable(slot.data.buffer)
    expected.set(100, mk(100, 200)); mk(100, 200).copy(slot.data); slot.send()
    slot.data.fill(0xee)
    const run = tx.allocateRun(2, 200)
    markAsUntransferable(run.slot(0).buffer)
    for (let i = 0; i < 2; i++) { expected.set(101 + i, mk(101 + i, 200)); mk(101 + i, 200).copy(run.slot(i)) }
    const views = [run.slot(0), run.slot(1)]
    run.send()
    for (const v of views) v.fill(0xee)
    const gone = tx.allocate(200); markAsUntransferable(gone.data.buffer); gone.discard()
    expected.set(103, mk(103, 200)); tx.send(mk(103, 200))
    tx.drain(2000)
  } catch (e) { note(e) }
  out.xdpTxCopyModeAfterSlots = tx.closed ? 'closed' : tx.info.copyMode
  const xseen = []
  let xexact = true
  for (let i = 0; i < 50 && xseen.length < 4; i++) {
    let batch
    try { batch = rx.nextBatchBlocking(100) } catch (e) { note(e); break }
    if (!batch) continue
    for (const r of batch.runs) { markAsUntransferable(r.buffer); keep(r) }
    for (let j = 0; j < batch.length; j++) {
      const d = batch.dataAt(j)
      const seq = d.readUInt32BE(14)
      xseen.push(seq)
      if (!expected.get(seq)?.equals(d)) xexact = false
    }
    try { batch.release() } catch (e) { note(e) }
  }
  out.xdp = { seen: xseen, exact: xexact, closed: rx.closed }
  // every RX frame reused, twice
  for (let round = 0; round < 8; round++) {
    try { for (let i = 0; i < 16; i++) tx.send(mk(3000 + round * 16 + i, 300)); tx.drain(2000) } catch (e) { note(e); break }
    for (let i = 0; i < 10; i++) { try { const batch = rx.nextBatchBlocking(20); if (batch) batch.release(); else break } catch (e) { note(e); break } }
  }
  out.keptStable = kept.every(([view, snap]) => view.length === snap.length && Buffer.from(view).equals(snap))
  out.keptAttached = kept.filter(([view]) => view.length > 0).length
  // exit with a marked RX batch and TX slot still lent
  try {
    tx.send(mk(4000, 200)); tx.drain(2000)
    let xheld = null
    for (let i = 0; i < 50 && !xheld; i++) xheld = rx.nextBatchBlocking(100)
    if (xheld) markAsUntransferable(xheld.runs[0].buffer)
    const xslot = tx.allocate(200); markAsUntransferable(xslot.data.buffer)
    globalThis.hold2 = [rx, tx, xheld, xslot]
  } catch (e) { note(e) }
  console.log(JSON.stringify(out))
`

for (const [runtime, execPath] of modern) {
  for (const [what, before] of Object.entries(spoilers)) {
    test(`${runtime}: ArrayBuffer.prototype.transfer ${what} before netring loads: every lending class lends copies, byte-exact, no abort (marked buffers, exit)`, async (t) => {
      const veth = localVethPair(t)
      const r = await runChild(`${before}\n${body}`, [veth.a, veth.b], { execPath, timeoutMs: 60_000 })
      t.is(r.signal, null, r.stderr.slice(0, 400))
      t.false(r.timedOut)
      t.is(r.code, 0, r.stderr.slice(0, 400))
      const out = lastJson<Record<string, unknown>>(r)
      t.deepEqual(out.errors, [], 'nothing threw (no take back closed anything)')
      t.true(out.captureCopyMode, 'Capture: info.copyMode from the start')
      t.deepEqual(out.xdpCopyMode, [true, true], 'XdpSocket RX and TX-only: info.copyMode from the start')
      t.true(out.xdpTxCopyModeAfterSlots)
      t.deepEqual(out.capture, { seen: [1, 2, 3, 5], exact: true, closed: false })
      t.deepEqual(out.xdp, { seen: [100, 101, 102, 103], exact: true, closed: false })
      t.true(out.keptStable, 'copies kept after release never change')
      t.true((out.keptAttached as number) > 0, 'copies stay attached (a take back leaves them)')
    })
  }

  test(`${runtime}: ArrayBuffer.prototype.transfer deleted after netring loaded: still zero-copy, a marked batch closes the socket, no abort`, async (t) => {
    const veth = localVethPair(t)
    const r = await runChild(
      `
      const { XdpSocket } = require('netring')
      const { markAsUntransferable } = require('node:worker_threads')
      delete ArrayBuffer.prototype.transfer
      const [a, b] = process.argv.slice(1)
      const rx = XdpSocket.open(b, { mode: 'rx' })
      const tx = XdpSocket.open(a, { mode: 'tx' })
      const f = Buffer.alloc(100); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12)
      const out = { copyMode: [rx.info.copyMode, tx.info.copyMode] }
      const slot = tx.allocate(100); f.copy(slot.data); const sv = slot.data; slot.send(); tx.drain(2000)
      out.slotDetached = sv.length === 0
      let batch = null
      for (let i = 0; i < 50 && !batch; i++) batch = rx.nextBatchBlocking(100)
      const view = batch.dataAt(0)
      out.same = view.equals(f)
      markAsUntransferable(view.buffer)
      try { batch.release(); out.threw = false } catch (e) { out.threw = e.code }
      out.closed = rx.closed
      const held = tx.allocate(100); markAsUntransferable(held.data.buffer)
      globalThis.keep = [rx, tx, view, held]
      console.log(JSON.stringify(out))`,
      [veth.a, veth.b],
      { execPath },
    )
    t.is(r.signal, null, r.stderr.slice(0, 400))
    t.is(r.code, 0, r.stderr.slice(0, 400))
    t.deepEqual(lastJson(r), { copyMode: [false, false], slotDetached: true, same: true, threw: 'EPERM', closed: true })
  })

  // The trust rule the README states: the binding calls whatever `transfer` is there when it
  // loads (nothing a Node-API addon can see tells a wrapper from the built-in), so code that runs
  // before netring is trusted like any module it could replace. A wrapper installed first is what
  // every take back calls, and one that kept what it moves would keep a view of frames the
  // kernel reuses: that is why netring takes transfer at load, and why it says so.
  test(`${runtime}: a transfer installed before netring loads is the one every take back calls (the README's trust rule)`, async (t) => {
    const veth = localVethPair(t)
    const r = await runChild(
      `
      const real = ArrayBuffer.prototype.transfer
      const aliases = []
      ArrayBuffer.prototype.transfer = function (length) {
        if (length === 0 && this.byteLength >= 2048) { aliases.push(real.call(this)); return new ArrayBuffer(0) }
        return real.apply(this, arguments)
      }
      const { XdpSocket } = require('netring')
      const [a, b] = process.argv.slice(1)
      const rx = XdpSocket.open(b, { mode: 'rx', frameCount: 64, ringSize: 64, batchSize: 16 })
      const tx = XdpSocket.open(a, { mode: 'tx' })
      const mk = (seq) => { const f = Buffer.alloc(300, seq & 0xff); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12); f.writeUInt32BE(seq, 14); return f }
      for (let i = 0; i < 4; i++) tx.send(mk(i)); tx.drain(2000)
      let batch = null
      for (let i = 0; i < 50 && !batch; i++) batch = rx.nextBatchBlocking(100)
      const view = batch.dataAt(0)
      batch.release()
      const out = { viewLength: view.length, closed: rx.closed, aliases: aliases.length }
      const alias = aliases[0] && new Uint8Array(aliases[0])
      const snap = alias && Buffer.from(alias)
      for (let round = 0; round < 10; round++) {
        for (let i = 0; i < 16; i++) tx.send(mk(100 + round * 16 + i)); tx.drain(2000)
        for (let i = 0; i < 10; i++) { const c = rx.nextBatchBlocking(20); if (c) c.release(); else break }
      }
      out.aliasWritten = alias ? !Buffer.from(alias).equals(snap) : false
      console.log(JSON.stringify(out))`,
      [veth.a, veth.b],
      { execPath },
    )
    t.is(r.code, 0, r.stderr.slice(0, 400))
    const out = lastJson<{ viewLength: number; closed: boolean; aliases: number }>(r)
    t.true(out.aliases >= 1, 'the take back called the transfer found at load')
    t.like(out, { viewLength: 0, closed: false })
  })
}
