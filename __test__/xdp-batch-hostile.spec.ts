// XdpBatch as the binding hands it over (one array [table, ...runs]) and XdpSocket's close once
// (BatchReader.finishClose), attacked: batches that wrap the RX frames (two
// runs) read byte-exact through every accessor and are detached, all of them, on release; a
// batch kept across many later batches and a close; `runs` tampered with; Array.prototype and
// Object.prototype accessors that steal, forge or re-enter while the binding builds its arrays
// and objects; the socket closing itself (a batch moved or marked) under every kind of reader,
// with sends waiting, 'close' listeners calling close() again, and async dispose. The contract
// checked throughout: no view shows a frame after it went back to the kernel (length 0, or bytes
// that never change), no crash.

import test from 'ava'
import { NetringError, XdpSocket, type XdpBatch } from 'netring'

import { lastJson, node24, runChild, runtimes } from './helpers/child'
import { frame, localVethPair } from './helpers/net'
import { eventually, XDP_TEST_SRC } from './helpers/xdp'

const major = (execPath: string) => (execPath === node24 ? 24 : Number(process.versions.node.split('.')[0]))
const DST = Buffer.from('ffffffffffff', 'hex')

/** A socket receiving on b (tiny UMEM: batches wrap often) and one sending on a. */
function pair(t: Parameters<typeof localVethPair>[0], rxOptions: Parameters<typeof XdpSocket.open>[1] = {}) {
  const veth = localVethPair(t)
  const rx = XdpSocket.open(veth.b, { mode: 'rx', frameCount: 64, ringSize: 64, batchSize: 64, ...rxOptions })
  const tx = XdpSocket.open(veth.a, { mode: 'tx' })
  t.teardown(() => {
    rx.close()
    tx.close()
  })
  const sent = new Map<number, Buffer>()
  let seq = 0
  const send = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const f = frame(DST, XDP_TEST_SRC, 60 + ((seq * 37) % 1400), seq)
      sent.set(seq++, f)
      t.true(tx.send(f))
    }
    t.true(tx.drain(2000))
    t.true(await eventually(() => rx.stats().rxRing >= n, 5000), `${n} frames reached the RX ring`)
  }
  return { veth, rx, tx, sent, send }
}

test('batches that wrap the RX frames: runs and table agree, every accessor byte-exact, every view detached on release and timestampNs stable', async (t) => {
  const { rx, sent, send } = pair(t)
  const fs = rx.info.frameSize
  const views: { view: Uint8Array; what: string }[] = []
  const stamps: [XdpBatch, bigint][] = []
  let twoRuns = 0
  let received = 0
  for (let round = 0; round < 14; round++) {
    const n = 17 + ((round * 13) % 40)
    await send(n)
    for (let got = 0; got < n; ) {
      const batch = rx.nextBatch()
      if (!batch) break
      got += batch.length
      received += batch.length
      t.true(batch.runs.length === 1 || batch.runs.length === 2)
      if (batch.runs.length === 2) twoRuns++
      t.is(batch.runs.reduce((s, r) => s + r.byteLength, 0), batch.length * fs, 'one frame per packet, no more')
      const wall = BigInt(Date.now()) * 1_000_000n
      t.true(batch.timestampNs > wall - 10_000_000_000n && batch.timestampNs <= wall + 1_000_000_000n)
      const iterated = [...batch]
      t.is(iterated.length, batch.length)
      for (let i = 0; i < batch.length; i++) {
        const r = batch.runAt(i)
        t.true(r < batch.runs.length)
        t.true(batch.offsetAt(i) + batch.lengthAt(i) <= batch.runs[r].byteLength)
        const data = batch.dataAt(i)
        const want = sent.get(data.readUInt32BE(14))
        t.truthy(want)
        t.true(data.equals(want!))
        t.true(batch.packet(i).data.equals(want!))
        t.true(batch.at(i)!.data.equals(want!))
        t.true(iterated[i].data.equals(want!))
        const run = batch.runs[r]
        t.true(Buffer.from(run.buffer, run.byteOffset + batch.offsetAt(i), batch.lengthAt(i)).equals(want!))
        if (i === 0 || i === batch.length - 1) views.push({ view: data, what: `round ${round} packet ${i}` })
      }
      for (const run of batch.runs) views.push({ view: run, what: `round ${round} run` })
      views.push({ view: iterated[0].data, what: `round ${round} packet(0).data` })
      const stamp = batch.timestampNs
      stamps.push([batch, stamp])
      if (round % 2) batch.release()
      else t.is(rx.nextBatch(), null, 'taking the next releases the one held') // nothing else waits
      t.true(batch.released)
      t.is(batch.timestampNs, stamp, 'timestampNs after release')
      t.true(batch.runs.every((r) => r.byteLength === 0))
      t.is(batch.dataAt(0).length, 0, 'dataAt after release is empty, as packet(i).data')
      t.is(batch.packet(0).data.length, 0)
      t.deepEqual([...batch], [])
      t.throws(() => batch.at(0)!.copy(), { instanceOf: NetringError, code: 'EBADF' })
    }
  }
  t.is(received, [...sent.keys()].length)
  t.true(twoRuns > 0, 'some batches wrapped around the RX frames')
  const leaked = views.filter(({ view }) => view.byteLength !== 0).map(({ what }) => what)
  t.deepEqual(leaked, [], 'every view of every batch is detached')
  rx.close()
  for (const [batch, stamp] of stamps) t.is(batch.timestampNs, stamp, 'timestampNs after close')
})

test('a batch kept across many later batches and a close stays released, empty and unchanged', async (t) => {
  const { rx, send } = pair(t, { batchSize: 4 })
  await send(4)
  const kept = rx.nextBatch()!
  const { length } = kept
  const stamp = kept.timestampNs
  const view = kept.dataAt(0)
  const run = kept.runs[0]
  for (let i = 0; i < 10; i++) {
    await send(12)
    for (let b = rx.nextBatch(); b; b = rx.nextBatch()) t.not(b, kept)
  }
  t.true(kept.released)
  t.is(kept.length, length)
  t.is(kept.timestampNs, stamp)
  t.is(view.byteLength, 0)
  t.is(run.byteLength, 0)
  t.is(kept.dataAt(0).length, 0)
  t.is(kept.at(0)!.data.length, 0)
  kept.release()
  rx.close()
  t.true(kept.released)
  t.is(kept.timestampNs, stamp)
})

test('a socket that closes itself (an RX batch moved away) detaches its lent TX slots too and keeps its final counts', async (t) => {
  if (!('transfer' in ArrayBuffer.prototype)) {
    t.is(Number(process.versions.node.split('.')[0]), 20, 'only Node 20 lacks ArrayBuffer.prototype.transfer')
    return
  }
  const veth = localVethPair(t)
  const xsk = XdpSocket.open(veth.b, { mode: 'rxtx' })
  const tx = XdpSocket.open(veth.a, { mode: 'tx' })
  t.teardown(() => {
    xsk.close()
    tx.close()
  })
  const slot = xsk.allocate(60)!
  slot.data.fill(0x5a)
  t.true(tx.send(frame(DST, XDP_TEST_SRC, 60, 1)))
  t.true(tx.drain(2000))
  t.true(await eventually(() => xsk.stats().rxRing >= 1, 5000))
  const batch = xsk.nextBatch()!
  const moved = (batch.runs[0].buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer()
  const e = t.throws<NetringError>(() => xsk.nextBatch(), { code: 'EPERM', message: /transferred/ })
  t.is(e?.interface, veth.b)
  t.true(xsk.closed)
  t.is(slot.data.length, 0, 'the lent TX slot was detached when the socket closed itself')
  const stats = xsk.stats()
  t.true(stats.received >= 1, 'the final counts stay readable, as after close()')
  t.true(moved.byteLength > 0, 'the moved memory stays readable (the kernel no longer writes it)')
})

test('tampering with batch.runs changes nothing the batch reads, and the real runs are still detached on release', async (t) => {
  const { rx, sent, send } = pair(t)
  await send(8)
  const batch = rx.nextBatch()!
  const real = [...batch.runs]
  const runs = batch.runs as Uint8Array[]
  runs[0] = new Uint8Array(1 << 20).fill(0xaa)
  runs.push(new Uint8Array(16))
  ;(batch as { runs: unknown }).runs = [new Uint8Array(4)]
  for (let i = 0; i < batch.length; i++) {
    const data = batch.dataAt(i)
    t.true(data.equals(sent.get(data.readUInt32BE(14))!))
  }
  const views = [...batch].map((p) => p.data)
  batch.release()
  t.true(real.every((r) => r.byteLength === 0))
  t.true(views.every((v) => v.byteLength === 0))
})

// ---- prototype pollution while the binding builds its results (children: pollution is global) ----

const pollutions: Record<string, string> = {
  // Setters for the elements of the binding's array [table, ...runs]: each keeps what it is given,
  // re-enters the socket, then stores the value as an own element (the facade reads it as usual).
  'Array.prototype element setters that steal and re-enter': `
    for (const k of ['0', '1', '2', '3']) {
      Object.defineProperty(Array.prototype, k, { configurable: true, get() { return undefined },
        set(v) {
          if (v instanceof ArrayBuffer || v instanceof Uint32Array) { stolen.add(v); reenter(rx) }
          Object.defineProperty(this, k, { value: v, writable: true, enumerable: true, configurable: true })
        } })
    }`,
  // The same, but the binding's values are swallowed and forged ones read back.
  'Array.prototype element accessors that swallow and forge': `
    const forgedTable = new Uint32Array([4, 1, 0, 0, 0, 0, 60, 0, 4000, 60, 3, 1, 60, 0, 0, 2000000])
    for (const k of ['0', '1', '2', '3']) {
      Object.defineProperty(Array.prototype, k, { configurable: true,
        get() { return this.__forge ? (k === '0' ? forgedTable : new ArrayBuffer(4096)) : undefined },
        set(v) {
          if (v instanceof ArrayBuffer || v instanceof Uint32Array) { stolen.add(v); Object.defineProperty(this, '__forge', { value: true, configurable: true }); return }
          Object.defineProperty(this, k, { value: v, writable: true, enumerable: true, configurable: true })
        } })
    }`,
  'Array.prototype slice, map, Symbol.iterator and length setters replaced': `
    const { slice, map } = Array.prototype
    Array.prototype.slice = function () { const r = slice.apply(this, arguments); if (r[0] instanceof ArrayBuffer) for (const x of r) stolen.add(x); return r.length ? [r[0], r[0], r[0]] : r }
    Array.prototype.map = function (f) { const r = map.call(this, f); return r.concat(r) }
    const iter = Array.prototype[Symbol.iterator]
    Array.prototype[Symbol.iterator] = function () { if (this[0] instanceof Uint32Array) for (const x of iter.call(this)) stolen.add(x); return iter.call(this) }
    Object.defineProperty(Object.prototype, 'length', { configurable: true, set(v) { Object.defineProperty(this, 'length', { value: v, writable: true, configurable: true }) } })`,
  // The TX objects ({ index, data }, { first, count, stride, data }): setters that steal and re-enter.
  'Object.prototype setters for the TX slot fields that steal and re-enter': `
    for (const k of ['index', 'data', 'first', 'count', 'stride']) {
      Object.defineProperty(Object.prototype, k, { configurable: true, get() { return undefined },
        set(v) {
          if (v instanceof ArrayBuffer) { stolen.add(v); reenter(tx) }
          Object.defineProperty(this, k, { value: v, writable: true, enumerable: true, configurable: true })
        } })
    }`,
}

const pollutionChild = (pollute: string) => `
  const { XdpSocket } = require('netring')
  const [a, b] = process.argv.slice(1)
  const rx = XdpSocket.open(b, { mode: 'rx', frameCount: 64, ringSize: 64, batchSize: 64 })
  const tx = XdpSocket.open(a, { mode: 'tx' })
  const mk = (seq, len) => { const f = Buffer.alloc(len); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12); f.writeUInt32BE(seq, 14); for (let i = 18; i < len; i++) f[i] = (i + seq) & 0xff; return f }
  const stolen = new Set() // not an array: the element setters would see its own pushes
  const reentries = {}
  let reentryBudget = 40
  const reenter = (s) => {
    if (reentryBudget-- <= 0) return
    const calls = { nextBatch: () => s.nextBatch(), nextBatchBlocking: () => s.nextBatchBlocking(0), close: () => s.close(), stats: () => s.stats(), allocate: () => s.allocate(60), send: () => s.send(mk(9, 60)), flush: () => s.flush() }
    for (const [name, call] of Object.entries(calls)) {
      let code
      try { call(); code = 'ok' } catch (e) { code = e.code || e.name }
      reentries[name + ':' + code] = (reentries[name + ':' + code] || 0) + 1
    }
  }
  const out = { errors: [] }
  const sentAt = new Map()
  let seq = 0
  const burst = (n) => { for (let i = 0; i < n; i++) { const f = mk(seq, 60 + (seq * 53) % 1400); sentAt.set(seq++, f); tx.send(f) } tx.drain(2000) }
  const slotSend = () => {
    const slot = tx.allocate(300)
    if (!slot) return
    const f = mk(seq, 300); sentAt.set(seq++, f)
    try { f.copy(slot.data); slot.send() } catch (e) { out.errors.push('slot ' + (e.code || e.message)) }
    tx.drain(2000)
  }
  const views = []
  let good = 0, bad = 0
  const round = () => {
    for (let i = 0; i < 50; i++) {
      let batch
      try { batch = rx.nextBatchBlocking(20) } catch (e) { out.errors.push('next ' + (e.code || e.name)); continue }
      if (!batch) break
      try {
        for (let j = 0; j < batch.length; j++) {
          const d = batch.dataAt(j)
          if (d.length >= 18 && sentAt.get(d.readUInt32BE(14))?.equals(d)) good++
          else bad++
          views.push(d)
        }
        for (const r of batch.runs) views.push(r)
      } catch (e) { out.errors.push('read ' + (e.code || e.name)) }
      try { batch.release() } catch (e) { out.errors.push('release ' + (e.code || e.name)) }
    }
  }
  ${pollute}
  for (let r = 0; r < 6 && !rx.closed; r++) { burst(20 + r * 7); slotSend(); round() }
  // views that still show something must never change: more traffic through every frame
  const live = views.filter((v) => v.byteLength > 0).map((v) => [v, Buffer.from(v)])
  for (let r = 0; r < 4 && !rx.closed && !tx.closed; r++) { burst(40); round() }
  out.changed = live.filter(([v, snap]) => !Buffer.from(v).equals(snap)).length
  out.live = live.length
  out.stolen = stolen.size
  out.stolenAttached = [...stolen].filter((s) => s instanceof ArrayBuffer && s.byteLength > 0).length
  out.reentries = reentries
  out.closed = [rx.closed, tx.closed]
  out.good = good
  out.bad = bad
  console.log(JSON.stringify(out))
`

for (const [runtime, execPath] of runtimes) {
  for (const [what, pollute] of Object.entries(pollutions)) {
    test(`${runtime}: ${what}: no crash, re-entry refused (EBUSY), every stolen ring buffer detached, no view changes`, async (t) => {
      const veth = localVethPair(t)
      const r = await runChild(pollutionChild(pollute), [veth.a, veth.b], { execPath, timeoutMs: 60_000 })
      t.is(r.signal, null, r.stderr.slice(0, 400))
      t.false(r.timedOut)
      t.is(r.code, 0, r.stderr.slice(0, 400))
      const out = lastJson<{ errors: string[]; changed: number; stolen: number; stolenAttached: number; reentries: Record<string, number>; closed: boolean[]; good: number; bad: number; live: number }>(r)
      t.log(JSON.stringify(out))
      t.is(out.changed, 0, 'no view still showing bytes saw them change')
      t.is(out.stolenAttached, 0, 'every ring ArrayBuffer stolen through a setter was detached')
      t.true(out.stolen > 0, 'the pollution saw the binding’s values')
      t.deepEqual(out.closed, [false, false], 'nothing was moved or marked: nothing closes')
      const refused = Object.keys(out.reentries).filter((k) => !k.endsWith(':EBUSY'))
      t.deepEqual(refused, [], 're-entering the socket while it lends is refused (EBUSY), whatever the call')
      if (what.includes('re-enter')) t.true(Object.keys(out.reentries).length > 0, 'the setters re-entered')
      // Forged elements, or a replaced slice() handing back other runs, make the facade read
      // the wrong bytes (or throw RangeError): within memory the batch holds, detached with it.
      if (what.includes('re-enter')) {
        t.is(out.bad, 0, 'pass-through pollution: every packet byte-exact')
        t.true(out.good > 50)
      }
    })
  }
}

// ---- the socket closing itself under every reader ----

const readers: Record<string, string> = {
  // r.threw: what the reader ended with; 'hung' if it did not end.
  'release()': `try { held.release(); r.threw = false } catch (e) { r.threw = e.code }`,
  'nextBatch()': `try { xsk.nextBatch(); r.threw = false } catch (e) { r.threw = e.code }`,
  'for await': `r.threw = await Promise.race([(async () => { try { for await (const p of xsk) {} return false } catch (e) { return e.code } })(), hung(5000)])`,
  'batches()': `r.threw = await Promise.race([(async () => { try { for await (const b of xsk.batches()) {} return false } catch (e) { return e.code } })(), hung(5000)])`,
  'packets()': `try { for (const p of xsk.packets({ timeoutMs: 2000 })) {} r.threw = false } catch (e) { r.threw = e.code }`,
  "'batch' events": `r.threw = await Promise.race([new Promise((res) => { xsk.on('error', (e) => res(e.code)); xsk.on('batch', () => {}) }), hung(5000)])`,
  'stream()': `r.threw = await Promise.race([new Promise((res) => { const s = xsk.stream(); s.on('error', (e) => res(e.code)); s.on('end', () => res('end')); s.resume() }), hung(5000)])`,
  'readable()': `r.threw = await Promise.race([xsk.readable().then(() => false, (e) => e.code), hung(5000)])`,
  'close()': `try { xsk.close(); r.threw = false } catch (e) { r.threw = e.code }`,
  'Symbol.asyncDispose': `try { await xsk[Symbol.asyncDispose](); r.threw = false } catch (e) { r.threw = e.code }`,
}

const spoils: Record<string, [minMajor: number, code: string]> = {
  'transfer()': [21, `(ab) => { moved.push(new Uint8Array(ab.transfer())) }`],
  markAsUntransferable: [22, `(ab) => { markAsUntransferable(ab); moved.push(new Uint8Array(ab)) }`],
}

for (const [runtime, execPath] of runtimes) {
  for (const [spoilName, [minMajor, spoil]] of Object.entries(spoils)) {
    if (major(execPath) < minMajor) continue
    for (const [reader, read] of Object.entries(readers)) {
      test(`${runtime}: a batch's run ${spoilName}, then ${reader}: the socket closes once, readers end, a waiting sendAsync rejects EBADF, close() in 'close' is a no-op, moved memory never changes`, async (t) => {
        const veth = localVethPair(t)
        const r = await runChild(
          `
          const { XdpSocket } = require('netring')
          const { markAsUntransferable } = require('node:worker_threads')
          const [a, b] = process.argv.slice(1)
          const moved = []
          const spoil = ${spoil}
          const mk = (seq) => { const f = Buffer.alloc(200, seq & 0xff); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12); f.writeUInt32BE(seq, 14); return f }
          const hung = (ms) => new Promise((res) => setTimeout(() => res('hung'), ms).unref())
          const xsk = XdpSocket.open(b, { mode: 'rxtx', frameCount: 64, ringSize: 32, batchSize: 8 })
          const tx = XdpSocket.open(a, { mode: 'tx' })
          const r = { closeEvents: 0, inListener: [] }
          xsk.on('close', () => {
            r.closeEvents++
            for (const call of [() => xsk.close(), () => xsk.close(0), () => xsk.nextBatch()]) {
              try { call(); r.inListener.push('ok') } catch (e) { r.inListener.push(e.code) }
            }
          })
          // every TX frame lent: a sendAsync waits for one
          const slots = []
          for (let i = 0; i <= 64; i++) { const s = xsk.allocate(60); if (!s) break; slots.push(s) }
          const pending = xsk.sendAsync(mk(1)).then(() => 'resolved', (e) => e.code)
          for (let i = 0; i < 8; i++) tx.send(mk(100 + i)); tx.drain(2000)
          let held = null
          for (let i = 0; i < 50 && !held; i++) held = xsk.nextBatchBlocking(100)
          spoil(held.runs[0].buffer)
          const snaps = moved.map((m) => Buffer.from(m))
          ;(async () => {
            ${read}
            r.closed = xsk.closed
            r.pending = await Promise.race([pending, hung(3000)])
            // traffic after: memory that stayed visible is written by nobody
            for (let i = 0; i < 100; i++) tx.send(mk(200 + i)); tx.drain(2000)
            await new Promise((res) => setTimeout(res, 100))
            r.movedChanged = moved.some((m, i) => !Buffer.from(m).equals(snaps[i]))
            try { xsk.close(); r.closeAfter = 'ok' } catch (e) { r.closeAfter = e.code }
            try { await xsk[Symbol.asyncDispose](); r.disposeAfter = 'ok' } catch (e) { r.disposeAfter = e.code }
            try { xsk.nextBatch(); r.nextAfter = 'ok' } catch (e) { r.nextAfter = e.code }
            r.sendAsyncAfter = await Promise.race([xsk.sendAsync(mk(2)).then(() => 'resolved', (e) => e.code), hung(3000)])
            try { slots[0].send(); r.slotSendAfter = 'ok' } catch (e) { r.slotSendAfter = e.code }
            try { r.statsAfter = typeof xsk.stats().received } catch (e) { r.statsAfter = e.code }
            r.closeEventsAtEnd = r.closeEvents
            console.log(JSON.stringify(r))
            tx.close()
          })().catch((e) => { console.log(JSON.stringify({ crashed: String(e && e.stack) })) })`,
          [veth.a, veth.b],
          { execPath, timeoutMs: 40_000 },
        )
        t.is(r.signal, null, r.stderr.slice(0, 400))
        t.false(r.timedOut)
        t.is(r.code, 0, r.stderr.slice(0, 400))
        const out = lastJson<Record<string, unknown>>(r)
        t.log(JSON.stringify(out))
        t.is(out.crashed, undefined)
        // close() and async dispose close it themselves: a take back that fails there is no error.
        t.is(out.threw, /close|Dispose/.test(reader) ? false : 'EPERM', 'the reader ends with the take back’s EPERM')
        t.like(out, { closed: true, closeEventsAtEnd: 1, pending: 'EBADF', movedChanged: false, closeAfter: 'ok', disposeAfter: 'ok', nextAfter: 'EBADF', sendAsyncAfter: 'EBADF' })
        t.deepEqual(out.inListener, ['ok', 'ok', 'EBADF'], "close() twice in 'close' is a no-op; nextBatch() there throws EBADF")
      })
    }
  }
}
