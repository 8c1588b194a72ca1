// A Capture's batch taken back by the binding (src/lent_buffer.rs: transfer(0) on Node >= 21,
// napi_detach_arraybuffer on Node 20) after JavaScript moved its memory away or marked it
// untransferable, in every way of reading a capture. Wherever the block cannot be taken back the
// capture closes its socket and the call throws EPERM naming the interface; 'close' comes once,
// every reader ends (with that error, never by hanging), the descriptor is closed, and memory a
// view still shows is never written again. Each case runs in a child (an abort must not take the
// suite down), under this Node and under Node 24 when it is installed. Traffic: an Injector on
// one end of a local veth pair, the capture on the other.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { lastJson, node24, runChild, runtimes } from './helpers/child'
import { localVethPair } from './helpers/net'

// Many cases, each a child process and a veth pair: a few at a time, or a loaded machine (two
// cores, other spec files beside this one) runs them into their deadlines.
const queue: (() => void)[] = []
let running = 0
function oneOfFew<T>(fn: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const start = () => {
      running++
      fn()
        .then(resolve, reject)
        .finally(() => {
          running--
          queue.shift()?.()
        })
    }
    if (running < 4) start()
    else queue.push(start)
  })
}

const major = (execPath: string) => (execPath === node24 ? 24 : Number(process.versions.node.split('.')[0]))

// What moves or marks the memory of packet `p` (its Buffer's ArrayBuffer is the whole block).
// `kept` gets what stays visible to JavaScript, `snap` what it showed at that moment.
const moves: Record<string, string> = {
  markAsUntransferable: `(p) => { markAsUntransferable(p.data.buffer); kept.push(p.data) }`,
  'transfer()': `(p) => { kept.push(new Uint8Array(p.data.buffer.transfer())) }`,
  'structuredClone transfer list': `(p) => { kept.push(new Uint8Array(structuredClone(p.data.buffer, { transfer: [p.data.buffer] }))) }`,
  'postMessage to a worker': `(p) => { worker.postMessage(p.data.buffer, [p.data.buffer]) }`,
}

/**
 * Whether `move` takes the memory out of the capture's hands on this runtime. Node 20 has no
 * transfer(); its markAsUntransferable sets no detach key (the block is detached as usual), and
 * a transfer list copies a lent block (Node marks Node-API buffers untransferable there).
 */
const effective = (execPath: string) => major(execPath) >= 22

// The child: argv = [a, b, style, move]. Sends with an Injector on `a`, captures on `b`.
const prelude = (move: string) => `
  const { Capture, Injector } = require('netring')
  const { markAsUntransferable, Worker } = require('node:worker_threads')
  const [a, b, style] = process.argv.slice(1)
  const tx = Injector.open(a)
  let seq = 0
  const frame = () => { const f = Buffer.alloc(60); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12); f.writeUInt32BE(seq++, 14); return f }
  const send = (n = 4) => { for (let i = 0; i < n; i++) tx.send(frame()); tx.drain(1000) }
  const worker = ${move === 'postMessage to a worker'}
    ? new Worker("const { parentPort } = require('node:worker_threads'); parentPort.on('message', (m) => parentPort.postMessage(m.byteLength))", { eval: true })
    : null
  const fromWorker = []
  worker?.on('message', (n) => fromWorker.push(n))
  const kept = []
  const spoil = ${moves[move]}
  const cap = Capture.open(b, { blockTimeoutMs: 1, filter: 'ether proto 0x88b5' })
  const r = { threw: false, closeEvents: 0 }
  cap.on('close', () => r.closeEvents++)
  const caught = (e) => { r.threw = e.code ?? e.name; r.interface = e.interface; r.message = e.message }
  const sleep = (ms) => new Promise((res) => setTimeout(res, ms))
  const timers = []
  const hung = (ms) => new Promise((res) => timers.push(setTimeout(() => res('hung'), ms)))
  const held = () => { send(); for (let i = 0; i < 50; i++) { const batch = cap.nextBatchBlocking(100); if (batch?.length) return batch } throw new Error('no batch') }
`

const finish = `
  r.closed = cap.closed
  r.fd = cap.fd
  // Memory a view still shows is never written again: more traffic, then compare.
  const snaps = kept.map((v) => Buffer.from(v))
  send(8)
  await sleep(50)
  r.keptIntact = kept.every((v, i) => v.length === snaps[i].length && Buffer.from(v).equals(snaps[i]))
  r.keptLengths = kept.map((v) => v.length)
  r.closeEventsBefore = r.closeEvents
  cap.close()
  cap.close()
  tx.close()
  if (worker) { for (let i = 0; i < 50 && fromWorker.length === 0 && r.moved; i++) await sleep(20); r.fromWorker = fromWorker; await worker.terminate() }
  globalThis.kept = kept
  timers.forEach(clearTimeout)
`

/** Wraps a case body: prints `r` as the last line. */
const child = (move: string, body: string) => `${prelude(move)}
  ;(async () => {
    ${body}
    ${finish}
  })().then(() => console.log(JSON.stringify(r)), (e) => { console.error(e); process.exit(3) })
`

// A batch held by a direct nextBatch(), then what takes it back.
const triggers: Record<string, { code: string; quiet?: boolean }> = {
  'nextBatch()': { code: `cap.nextBatch()` },
  'nextBatchBlocking()': { code: `cap.nextBatchBlocking(100)` },
  'release()': { code: `batch.release()` },
  'release() twice': { code: `try { batch.release() } finally { r.second = (() => { try { batch.release(); return 'ok' } catch (e) { return e.code } })() }` },
  'setFilter()': { code: `cap.setFilter(null)` },
  'readable()': { code: `send(); await cap.readable()` },
  'close()': { code: `cap.close()`, quiet: true },
  'dispose (using)': { code: `cap[Symbol.dispose]()`, quiet: true },
}

// Reading styles that hand out lent packets: each spoils the first packet it gets. Every loop is
// bounded (limit, timeout); `r.ended` says how the loop ended.
const styles: Record<string, string> = {
  'packets()': `
    send(8)
    try { let n = 0; for (const p of cap.packets({ timeoutMs: 1500 })) { if (n++ === 0) spoil(p); if (n > 64) break } r.ended = 'done' } catch (e) { caught(e); r.ended = 'error' }`,
  'packets() left with break': `
    send(8)
    try { for (const p of cap.packets({ timeoutMs: 1500 })) { spoil(p); break } r.ended = 'done' } catch (e) { caught(e); r.ended = 'error' }`,
  'for await': `
    const pump = setInterval(() => send(2), 5)
    const loop = (async () => { let n = 0; for await (const p of cap) { if (n++ === 0) spoil(p); if (n > 64) break } })()
    r.ended = await Promise.race([loop.then(() => 'done', (e) => { caught(e); return 'error' }), hung(3000)])
    clearInterval(pump)`,
  'iterate() left with break': `
    const pump = setInterval(() => send(2), 5)
    const loop = (async () => { for await (const p of cap.iterate()) { spoil(p); break } })()
    r.ended = await Promise.race([loop.then(() => 'done', (e) => { caught(e); return 'error' }), hung(3000)])
    clearInterval(pump)`,
  'batches()': `
    const pump = setInterval(() => send(2), 5)
    const loop = (async () => { let n = 0; for await (const batch of cap.batches()) { if (n++ === 0) spoil(batch.at(0)); if (n > 64) break } })()
    r.ended = await Promise.race([loop.then(() => 'done', (e) => { caught(e); return 'error' }), hung(3000)])
    clearInterval(pump)`,
  "'packet' events": `
    const pump = setInterval(() => send(2), 5)
    let n = 0
    cap.on('error', (e) => { if (r.threw === false) caught(e) })
    const onPacket = (p) => { if (n++ === 0) spoil(p) }
    cap.on('packet', onPacket)
    r.ended = await Promise.race([new Promise((res) => cap.once('close', () => res('closed'))), sleep(1500).then(() => 'running')])
    cap.off('packet', onPacket)
    clearInterval(pump)`,
  "'packet' events, paused and resumed": `
    const pump = setInterval(() => send(2), 5)
    let n = 0
    cap.on('error', (e) => { if (r.threw === false) caught(e) })
    const onPacket = (p) => { if (n++ === 0) { spoil(p); cap.pause(); setTimeout(() => cap.resume(), 50) } }
    cap.on('packet', onPacket)
    r.ended = await Promise.race([new Promise((res) => cap.once('close', () => res('closed'))), sleep(1500).then(() => 'running')])
    cap.off('packet', onPacket)
    clearInterval(pump)`,
  "'batch' event, released in the listener": `
    const pump = setInterval(() => send(2), 5)
    let n = 0
    const errors = []
    cap.on('error', (e) => errors.push(e))
    const onBatch = (batch) => { if (n++ === 0) { spoil(batch.at(0)); try { batch.release() } finally { r.second = (() => { try { batch.release(); return 'ok' } catch (e) { return e.code } })() } } }
    cap.on('batch', onBatch)
    r.ended = await Promise.race([new Promise((res) => cap.once('close', () => res('closed'))), sleep(1500).then(() => 'running')])
    cap.off('batch', onBatch)
    clearInterval(pump)
    if (errors.length) caught(errors[0])
    r.errorEvents = errors.length`,
}

interface Result {
  threw: string | false
  interface?: string
  message?: string
  closed: boolean
  fd: number
  closeEvents: number
  closeEventsBefore: number
  keptIntact: boolean
  keptLengths: number[]
  ended?: string
  released?: boolean
  second?: string
  errorEvents?: number
  fromWorker?: number[]
}

for (const [runtime, execPath] of runtimes) {
  for (const move of Object.keys(moves)) {
    // Node 20 has no ArrayBuffer.prototype.transfer.
    if (move === 'transfer()' && major(execPath) < 21) continue
    const moved = effective(execPath)

    for (const [trigger, { code, quiet }] of Object.entries(triggers)) {
      test(`${runtime}: a held batch, ${move}, then ${trigger}: ${moved ? (quiet ? 'closes quietly' : 'EPERM naming the interface') : 'taken back as usual'}, 'close' once`, (t) => oneOfFew(async () => {
        const veth = localVethPair(t)
        const body = `
          const batch = held()
          spoil(batch.at(0))
          r.moved = true
          try { ${code}; } catch (e) { caught(e) }
          r.released = batch.released`
        const res = await runChild(child(move, body), [veth.a, veth.b, 'held'], { execPath, timeoutMs: 20_000 })
        t.is(res.signal, null, res.stderr)
        t.false(res.timedOut)
        t.is(res.code, 0, res.stderr)
        const r = lastJson<Result>(res)
        const closes = moved || quiet === true
        t.like(r, { closed: closes, fd: closes ? -1 : r.fd, closeEventsBefore: closes ? 1 : 0, closeEvents: 1 })
        t.true(r.released, 'the held batch reads as released')
        t.true(r.keptIntact, 'what a view still shows is never written again')
        if (trigger.includes('twice')) t.is(r.second, 'ok', 'a second release() is a no-op')
        if (!moved || quiet) return t.is(r.threw, false, r.message)
        t.is(r.threw, 'EPERM', r.message)
        t.is(r.interface, veth.b, 'the EPERM names the interface')
        t.regex(r.message!, move === 'markAsUntransferable' ? /untransferable/ : /transferred/)
        if (move === 'markAsUntransferable') t.true(r.keptLengths[0]! > 0, 'a marked view stays readable')
      }))
    }

    for (const [style, body] of Object.entries(styles)) {
      test(`${runtime}: ${style}, ${move} on the first packet: ${moved ? 'the reader ends with EPERM naming the interface' : 'reading goes on'}, 'close' once`, (t) => oneOfFew(async () => {
        const veth = localVethPair(t)
        const res = await runChild(child(move, `r.moved = true\n${body}`), [veth.a, veth.b, style], { execPath, timeoutMs: 20_000 })
        t.is(res.signal, null, res.stderr)
        t.false(res.timedOut)
        t.is(res.code, 0, res.stderr)
        const r = lastJson<Result>(res)
        t.not(r.ended, 'hung', 'the reader ended')
        t.true(r.keptIntact, 'what a view still shows is never written again')
        if (!moved) {
          t.like(r, { threw: false, closed: false, closeEventsBefore: 0, closeEvents: 1 })
          return
        }
        t.like(r, { closed: true, fd: -1, closeEventsBefore: 1, closeEvents: 1 })
        t.is(r.threw, 'EPERM', r.message)
        t.is(r.interface, veth.b, 'the EPERM names the interface')
        if (style.startsWith("'batch'")) t.is(r.second, 'ok', 'a second release() is a no-op')
        if (style.startsWith("'batch'")) t.is(r.errorEvents, 1, "one 'error' (the listener's release threw)")
        if (move === 'postMessage to a worker') t.true(r.fromWorker!.length === 1 && r.fromWorker![0]! > 0, 'the worker got the memory')
      }))
    }
  }
}

// ---- around the close the binding did itself ----

for (const [runtime, execPath] of runtimes) {
  // Node 20 detaches a marked block like any other: only transfer-capable runtimes self-close.
  if (!effective(execPath)) continue

  test(`${runtime}: a 'close' listener that calls back into the capture (close(), nextBatch(), setFilter(), stats(), release()) while it closes itself: 'close' once, the caller still gets EPERM`, (t) => oneOfFew(async () => {
    const veth = localVethPair(t)
    const body = `
      const batch = held()
      spoil(batch.at(0))
      const inside = {}
      const attempt = (name, fn) => { try { fn(); inside[name] = 'ok' } catch (e) { inside[name] = e.code } }
      cap.on('close', () => {
        attempt('close', () => cap.close())
        attempt('nextBatch', () => cap.nextBatch())
        attempt('setFilter', () => cap.setFilter(null))
        attempt('stats', () => cap.stats())
        attempt('release', () => batch.release())
        inside.fd = cap.fd
        inside.closed = cap.closed
        inside.released = batch.released
      })
      try { cap.nextBatch() } catch (e) { caught(e) }
      r.inside = inside`
    const res = await runChild(child('markAsUntransferable', body), [veth.a, veth.b], { execPath })
    t.is(res.signal, null, res.stderr)
    t.is(res.code, 0, res.stderr)
    const r = lastJson<Result & { inside: Record<string, unknown> }>(res)
    t.like(r, { threw: 'EPERM', interface: veth.b, closeEventsBefore: 1, closeEvents: 1, fd: -1 })
    t.deepEqual(r.inside, { close: 'ok', nextBatch: 'EBADF', setFilter: 'EBADF', stats: 'EBADF', release: 'ok', fd: -1, closed: true, released: true })
  }))

  test(`${runtime}: batches from before a self-close: a released one stays unreadable (EBADF, length 0), the refused one keeps its bytes, and nothing more arrives`, (t) => oneOfFew(async () => {
    const veth = localVethPair(t)
    const body = `
      const first = held()
      const firstPacket = first.at(0)
      const firstData = firstPacket.data
      first.release()
      const second = held()
      const secondPacket = second.at(0)
      spoil(secondPacket)
      try { cap.nextBatch() } catch (e) { caught(e) }
      const read = (fn) => { try { return fn() } catch (e) { return e.code } }
      r.old = {
        firstReleased: first.released, firstDataLength: firstData.length, firstBytes: first.bytes.length,
        firstLength: read(() => firstPacket.length), firstCopy: read(() => firstPacket.copy()),
        secondReleased: second.released, secondLength: read(() => secondPacket.length),
        secondTimestamp: read(() => secondPacket.timestampNs), secondNewData: second.at(0).data.length,
        secondCopy: read(() => second.copy()), secondBytes: second.bytes.length,
      }
      send(8)
      await sleep(50)
      r.after = read(() => cap.nextBatch())`
    const res = await runChild(child('markAsUntransferable', body), [veth.a, veth.b], { execPath })
    t.is(res.signal, null, res.stderr)
    t.is(res.code, 0, res.stderr)
    const r = lastJson<Result & { old: Record<string, unknown>; after: unknown }>(res)
    t.like(r, { threw: 'EPERM', closed: true, fd: -1, keptIntact: true })
    t.like(r.old, {
      firstReleased: true, firstDataLength: 0, firstBytes: 0, firstLength: 'EBADF', firstCopy: 'EBADF',
      secondReleased: true, secondLength: 'EBADF', secondTimestamp: 'EBADF', secondNewData: 0, secondCopy: 'EBADF',
    })
    t.true((r.old.secondBytes as number) > 0, 'the refused block is still attached (views keep reading it)')
    t.is(r.after, 'EBADF', 'no packet after the socket closed')
  }))

  test(`${runtime}: a readable() pending when a moved batch's release closes the capture settles instead of hanging`, (t) => oneOfFew(async () => {
    const veth = localVethPair(t)
    // The wait is shared: a readable() in flight, a batch taken meanwhile, moved, then released.
    const body = `
      send()
      await sleep(30)
      const waiting = cap.readable().then(() => 'resolved', (e) => 'rejected:' + e.code)
      const batch = cap.nextBatch() ?? held()
      spoil(batch.at(0))
      try { batch.release() } catch (e) { caught(e) }
      r.pending = await Promise.race([waiting, hung(3000)])
      r.again = await Promise.race([cap.readable().then(() => 'resolved', (e) => 'rejected:' + e.code), hung(3000)])`
    const res = await runChild(child('transfer()', body), [veth.a, veth.b], { execPath })
    t.is(res.signal, null, res.stderr)
    t.is(res.code, 0, res.stderr)
    const r = lastJson<Result & { pending: string; again: string }>(res)
    t.like(r, { threw: 'EPERM', interface: veth.b, closed: true, closeEventsBefore: 1 })
    t.not(r.pending, 'hung')
    t.is(r.again, 'resolved', 'readable() on the closed capture resolves at once')
  }))

  test(`${runtime}: a batch moved with transfer() in copy mode is no escape: the capture goes on`, (t) => oneOfFew(async () => {
    const veth = localVethPair(t)
    const body = `
      const batch = held()
      spoil(batch.at(0))
      try { cap.nextBatch(); r.next = 'ok' } catch (e) { caught(e) }
      r.copyMode = cap.info.copyMode`
    const res = await runChild(child('transfer()', body), [veth.a, veth.b], { execPath, env: { NETRING_FORCE_COPY: '1' } })
    t.is(res.code, 0, res.stderr)
    t.like(lastJson<Result>(res), { threw: false, closed: false, closeEventsBefore: 0, closeEvents: 1, copyMode: true } as Partial<Result>)
  }))
}

// ---- a capture left holding a moved or marked batch ----

for (const [runtime, execPath] of runtimes) {
  for (const move of ['markAsUntransferable', 'transfer()'] as const) {
    if (move === 'transfer()' && major(execPath) < 21) continue
    for (const ending of ['collected (never closed)', 'alive at process.exit()', 'alive when the process ends']) {
      test(`${runtime}: a capture holding a batch (${move}) ${ending}: no abort, its socket closed, the kept view unchanged`, (t) => oneOfFew(async () => {
        const veth = localVethPair(t)
        const r = await runChild(
          `
          const { Capture, Injector } = require('netring')
          const { markAsUntransferable } = require('node:worker_threads')
          const { readlinkSync } = require('node:fs')
          const [a, b, ending] = process.argv.slice(1)
          const tx = Injector.open(a)
          const f = Buffer.alloc(60); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12)
          const send = (n) => { for (let i = 0; i < n; i++) tx.send(f); tx.drain(1000) }
          // Only the view survives this function: the capture and its batch can be collected.
          function lend() {
            const cap = Capture.open(b, { blockTimeoutMs: 1, filter: 'ether proto 0x88b5' })
            send(4)
            let batch = null
            for (let i = 0; i < 50 && !batch?.length; i++) batch = cap.nextBatchBlocking(100)
            const data = batch.at(0).data
            ${move === 'markAsUntransferable' ? 'markAsUntransferable(data.buffer); var view = data' : 'var view = new Uint8Array(data.buffer.transfer())'}
            if (!ending.startsWith('collected')) globalThis.cap = cap
            return { fd: cap.fd, view, snap: Buffer.from(view) }
          }
          ;(async () => {
            const { fd, view, snap } = lend()
            globalThis.view = view
            const open = () => { try { return readlinkSync('/proc/self/fd/' + fd).startsWith('socket:') } catch { return false } }
            if (ending.startsWith('collected')) for (let i = 0; i < 50 && open(); i++) { gc(); await new Promise((r) => setTimeout(r, 20)) }
            send(8)
            await new Promise((r) => setTimeout(r, 50))
            console.log(JSON.stringify({ open: open(), intact: Buffer.from(view).equals(snap), length: view.length }))
            tx.close()
            if (ending.includes('exit()')) process.exit(0)
          })()`,
          [veth.a, veth.b, ending],
          { execPath, nodeArgs: ['--expose-gc'] },
        )
        t.is(r.signal, null, r.stderr)
        t.false(r.timedOut)
        t.is(r.code, 0, r.stderr)
        const result = lastJson<{ open: boolean; intact: boolean; length: number }>(r)
        t.true(result.length > 0)
        if (ending.startsWith('collected')) {
          t.false(result.open, 'the finalizer closed the socket')
          t.true(result.intact, 'the socket is closed: nothing writes into the kept view')
        }
      }))
    }
  }
}

// ---- FanoutPool workers ----

// A handler that does to every packet's memory what `workerData.how` says, reading each one
// first as handlers do; `style` is how it reads.
const poolHandler = `
import { markAsUntransferable } from 'node:worker_threads'
export default async function (capture, context) {
  const { how, style } = context.workerData
  let closes = 0
  capture.on('close', () => closes++)
  const spoil = (p) => {
    if (p.data.length === 0) return
    if (how === 'mark') { markAsUntransferable(p.data.buffer); (globalThis.kept ??= []).push(p.data) }
    else context.postMessage({ memory: p.data.buffer }, [p.data.buffer])
  }
  try {
    if (style === 'for await') for await (const p of capture.iterate({ signal: context.signal })) spoil(p)
    else if (style === 'nextBatchBlocking') for (let b = capture.nextBatchBlocking(); b; b = capture.nextBatchBlocking()) for (const p of b) spoil(p)
    else for (const p of capture.packets()) spoil(p)
  } finally {
    context.postMessage({ closes, closed: capture.closed, fd: capture.fd })
  }
}
`

for (const [runtime, execPath] of runtimes) {
  if (!effective(execPath)) continue
  for (const how of ['mark', 'post to the pool'] as const) {
    for (const style of ['for await', 'nextBatchBlocking', 'packets()'] as const) {
      test(`${runtime}: a FanoutPool handler (${style}) that does '${how}' to packet memory: the pool reports EPERM naming the interface, the worker's capture closed once, no abort`, (t) => oneOfFew(async () => {
        const veth = localVethPair(t)
        const dir = mkdtempSync(join(tmpdir(), 'netring-takeback-'))
        t.teardown(() => rmSync(dir, { recursive: true, force: true }))
        writeFileSync(join(dir, 'handler.mjs'), poolHandler)
        const r = await runChild(
          `
          const { FanoutPool, Injector } = require('netring')
          const [a, b, handler, how, style] = process.argv.slice(1)
          ;(async () => {
            const pool = await FanoutPool.open(b, { workers: 1, handler, onWorkerExit: 'close', workerData: { how, style },
              capture: { profile: 'low-memory', blockTimeoutMs: 1, filter: 'ether proto 0x88b5' } })
            const out = { errors: [], memories: 0, ends: [] }
            pool.on('error', (e) => out.errors.push({ code: e.code, interface: e.interface, message: e.message }))
            pool.on('message', (m) => { if (m.memory) out.memories++; else out.ends.push(m) })
            const tx = Injector.open(a)
            const f = Buffer.alloc(60); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12)
            for (let i = 0; i < 100 && out.ends.length === 0; i++) { for (let j = 0; j < 4; j++) tx.send(f); tx.drain(1000); await new Promise((r) => setTimeout(r, 10)) }
            tx.close()
            await pool.close()
            console.log(JSON.stringify(out))
          })().catch((e) => { console.error(e); process.exit(3) })`,
          [veth.a, veth.b, join(dir, 'handler.mjs'), how === 'mark' ? 'mark' : 'post', style],
          { execPath, timeoutMs: 30_000 },
        )
        t.is(r.signal, null, r.stderr)
        t.false(r.timedOut)
        t.is(r.code, 0, r.stderr)
        const out = lastJson<{ errors: { code: string; interface?: string; message: string }[]; memories: number; ends: unknown[] }>(r)
        t.is(out.ends.length, 1)
        const end = out.ends[0] as { closes: number; closed: boolean; fd: number }
        // Reading a moved packet throws before any take back: the capture closes at its next
        // call (an iterator's return(), or the worker's own close once the handler ended).
        t.is(end.closes, end.closed ? 1 : 0)
        if (how === 'mark' || style !== 'nextBatchBlocking') t.like(end, { closes: 1, closed: true, fd: -1 })
        t.is(out.errors.length, 1, JSON.stringify(out.errors))
        t.is(out.errors[0]!.code, 'EPERM')
        t.is(out.errors[0]!.interface, veth.b, `the EPERM names the interface: ${out.errors[0]!.message}`)
        if (how !== 'mark') t.true(out.memories >= 1)
      }))
    }
  }
}

// ---- reading a moved batch ----

for (const [runtime, execPath] of runtimes) {
  if (major(execPath) < 21) continue
  test(`${runtime}: reading a packet of a batch whose memory was moved is EPERM naming the interface, like the take back that follows`, (t) => oneOfFew(async () => {
    const veth = localVethPair(t)
    const body = `
      send(8)
      let batch = null
      for (let i = 0; i < 50 && !(batch?.length > 1); i++) batch = cap.nextBatchBlocking(100)
      r.packets = batch.length
      spoil(batch.at(0))
      const read = (fn) => { try { fn(); return { code: 'none' } } catch (e) { return { code: e.code, interface: e.interface } } }
      r.reads = { data: read(() => batch.at(1).data), length: read(() => batch.at(1).length), copy: read(() => batch.copy()) }
      r.stillOpen = !cap.closed
      try { batch.release() } catch (e) { caught(e) }`
    const res = await runChild(child('transfer()', body), [veth.a, veth.b], { execPath })
    t.is(res.code, 0, res.stderr)
    const r = lastJson<Result & { packets: number; reads: Record<string, { code: string; interface?: string }>; stillOpen: boolean }>(res)
    t.true(r.packets > 1)
    t.true(r.stillOpen, 'reading closes nothing: the take back does')
    t.like(r, { threw: 'EPERM', interface: veth.b, closed: true, closeEventsBefore: 1 })
    for (const [what, read] of Object.entries(r.reads)) t.deepEqual(read, { code: 'EPERM', interface: veth.b }, what)
  }))
}

// ---- ArrayBuffer.prototype.transfer unusable when netring loads ----

// The binding looks transfer up once, at load. Where it found none it detached with
// napi_detach_arraybuffer, which on Node >= 22 aborts the process on a buffer marked with
// markAsUntransferable (V8's Detach(...).Check()), and the lent buffer stayed tracked by Node's
// exit hook, which aborts the same way at exit. It looks transfer up on the real prototype now
// (a replaced global ArrayBuffer does not hide it), and where there is none on Node >= 22 it
// lends copies and never detaches.
for (const [runtime, execPath] of runtimes) {
  if (major(execPath) < 22) continue
  const spoilers: Record<string, string> = {
    'deleted': 'delete ArrayBuffer.prototype.transfer',
    'behind a global ArrayBuffer replaced': 'globalThis.ArrayBuffer = class ArrayBuffer {}',
    'behind a getter that throws': "Object.defineProperty(ArrayBuffer.prototype, 'transfer', { get() { throw new Error('no') }, configurable: true })",
  }
  for (const [what, before] of Object.entries(spoilers)) {
    for (const then of ['release()', 'process exit']) {
      test(`${runtime}: ArrayBuffer.prototype.transfer ${what} before netring loads, a batch marked untransferable, then ${then}: no abort`, (t) => oneOfFew(async () => {
        const veth = localVethPair(t)
        const r = await runChild(
          `
          ${before}
          const { Capture, Injector } = require('netring')
          const { markAsUntransferable } = require('node:worker_threads')
          const [a, b, then] = process.argv.slice(1)
          const out = {}
          try {
            const tx = Injector.open(a)
            const f = Buffer.alloc(60); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12)
            const cap = Capture.open(b, { blockTimeoutMs: 1, filter: 'ether proto 0x88b5' })
            for (let i = 0; i < 4; i++) tx.send(f); tx.drain(1000)
            let batch = null
            for (let i = 0; i < 50 && !batch?.length; i++) batch = cap.nextBatchBlocking(100)
            const view = batch.at(0).data
            markAsUntransferable(view.buffer)
            globalThis.view = view
            globalThis.cap = cap
            tx.close()
            if (then === 'release()') {
              out.copyMode = cap.info.copyMode
              try { batch.release(); out.threw = false } catch (e) { out.threw = e.code; out.interface = e.interface }
              out.closed = cap.closed
              out.viewLength = view.length
            }
          } catch (e) {
            out.refused = e.code
          }
          console.log(JSON.stringify(out))`,
          [veth.a, veth.b, then],
          { execPath },
        )
        t.is(r.signal, null, r.stderr.slice(0, 300))
        t.false(r.timedOut)
        t.is(r.code, 0, r.stderr.slice(0, 300))
        const out = lastJson<{ threw?: string | false; closed?: boolean; copyMode?: boolean; viewLength?: number }>(r)
        if (then !== 'release()') return
        if (what.includes('global')) {
          // transfer() is still on the real prototype: the marked block is refused, the capture closes.
          t.like(out, { threw: 'EPERM', closed: true, copyMode: false })
        } else {
          // No transfer at all: ring memory is lent as copies, which a take back leaves attached.
          t.like(out, { threw: false, closed: false, copyMode: true })
          t.true(out.viewLength! > 0)
        }
      }))
    }
  }
}
