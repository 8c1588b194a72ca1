// More hostile use of lent memory, beside untransferable.spec and lend-hostile.spec: a socket
// that closes itself because a transmit slot could not be taken back (markAsUntransferable)
// while sendAsync frames wait; ArrayBuffer.prototype's `detached` getter replaced after netring
// loaded; markAsUntransferable inside a worker that then ends; memory moved to a worker while the
// lender keeps receiving. Each case runs in a child, under this Node and under Node 24 when present.

import test from 'ava'

import { lastJson, runChild, runtimes } from './helpers/child'
import { localVethPair } from './helpers/net'

const frameFn = `const frame = (seq = 0) => { const f = Buffer.alloc(60); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12); f.writeUInt32BE(seq, 20); return f }`
const settleFn = `const settle = (p, ms = 3000) => Promise.race([p.then(() => 'resolved', (e) => 'rejected:' + (e.code || e.message)), new Promise((r) => setTimeout(() => r('pending'), ms))])`

// A slot marked untransferable (Node >= 22) cannot be taken back: its send() closes the socket
// (EPERM). sendAsync frames queued before must then settle (reject), as close() makes them do,
// and a writable() must end; on Node 20 the slot is sent as usual and they resolve.
const owners: Record<string, string> = {
  Injector: `Injector.open(process.argv[1])`,
  XdpSocket: `XdpSocket.open(process.argv[2], { mode: 'tx' })`,
}
for (const [runtime, execPath] of runtimes) {
  for (const [name, open] of Object.entries(owners)) {
    for (const via of ['sendAsync', 'writable'] as const) {
      test(`${runtime}: ${name} closed by a marked slot's send(): a ${via} frame queued before settles`, async (t) => {
        const veth = localVethPair(t)
        const r = await runChild(
          `
          const { Injector, XdpSocket } = require('netring')
          const { markAsUntransferable } = require('node:worker_threads')
          ${frameFn}
          ${settleFn}
          ;(async () => {
            const owner = ${open}
            const slot = owner.allocate(60)
            markAsUntransferable(slot.data.buffer)
            globalThis.kept = slot.data
            let pending
            if (${JSON.stringify(via)} === 'sendAsync') pending = owner.sendAsync(frame(1))
            else {
              const w = owner.writable()
              pending = new Promise((resolve, reject) => { w.on('finish', resolve); w.on('error', reject) })
              for (let i = 0; i < 3; i++) w.write(frame(i))
              w.end()
            }
            const result = {}
            try { slot.send() } catch (e) { result.threw = e.code }
            result.settled = await settle(pending)
            result.closed = owner.closed
            try { owner.close() } catch {}
            console.log(JSON.stringify(result))
          })()`,
          [veth.a, veth.b],
          { execPath },
        )
        t.is(r.signal, null, r.stderr)
        t.false(r.timedOut)
        t.is(r.code, 0, r.stderr)
        const result = lastJson<{ threw?: string; settled: string; closed: boolean }>(r)
        t.log(JSON.stringify(result))
        t.not(result.settled, 'pending', JSON.stringify(result))
        if (result.threw === 'EPERM') t.regex(result.settled, /^rejected:/)
        else t.is(result.settled, 'resolved')
      })
    }
  }
}

// The facade reads whether a block is detached; a `detached` getter replaced after netring
// loaded (throwing, or always false) must neither break release() nor close a capture whose
// blocks were all taken back.
for (const [runtime, execPath] of runtimes) {
  for (const getter of ['throw new Error("hostile detached getter")', 'return false', 'return true']) {
    test(`${runtime}: ArrayBuffer.prototype.detached replaced after load ({ ${getter} }): the capture keeps working`, async (t) => {
      const r = await runChild(
        `
        const { Capture } = require('netring')
        const dgram = require('node:dgram')
        Object.defineProperty(ArrayBuffer.prototype, 'detached', { get() { ${getter} }, configurable: true })
        ;(async () => {
          const s = dgram.createSocket('udp4')
          await new Promise((r) => s.bind(0, '127.0.0.1', r))
          const cap = Capture.open('lo', { blockTimeoutMs: 1, filter: 'udp port ' + s.address().port })
          const result = { got: 0, errors: [] }
          for (let i = 0; i < 5; i++) {
            await new Promise((r) => s.send('detached getter', s.address().port, '127.0.0.1', r))
            try {
              const batch = cap.nextBatchBlocking(2000)
              if (batch) {
                const view = [...batch][0].data
                result.got += batch.length
                batch.release()
                if (view.length !== 0) result.readableAfterRelease = true
              }
            } catch (e) { result.errors.push(e.code || e.message) }
          }
          result.closed = cap.closed
          try { cap.close() } catch (e) { result.closeError = e.code || e.message }
          s.close()
          console.log(JSON.stringify(result))
        })()`,
        [],
        { execPath },
      )
      t.is(r.signal, null, r.stderr)
      t.is(r.code, 0, r.stderr)
      const result = lastJson<Record<string, unknown>>(r)
      t.log(JSON.stringify(result))
      t.like(result, { errors: [], closed: false })
      t.true((result.got as number) >= 5)
      t.is(result.readableAfterRelease, undefined)
      t.is(result.closeError, undefined)
    })
  }
}

// markAsUntransferable inside a worker on memory its own socket lent, then the worker ends
// (naturally, process.exit, terminate() from the main thread): nothing aborts.
const workerLenders: Record<string, string> = {
  'a Capture batch': `
    const s = dgram.createSocket('udp4'); await new Promise((r) => s.bind(0, '127.0.0.1', r))
    const owner = Capture.open('lo', { blockTimeoutMs: 1, filter: 'udp port ' + s.address().port })
    for (let i = 0; i < 3; i++) await new Promise((r) => s.send('w' + i, s.address().port, '127.0.0.1', r))
    s.close()
    const view = [...owner.nextBatchBlocking(3000)][0].data`,
  'an Injector slot': `
    const owner = Injector.open(workerData[0])
    const view = owner.allocate(60).data`,
  'an XdpSocket batch': `
    const owner = XdpSocket.open(workerData[1], { mode: 'rx' })
    const tx = Injector.open(workerData[0])
    let batch = null
    for (let i = 0; i < 50 && !batch; i++) { tx.send(frame(i)); tx.drain(1000); batch = owner.nextBatchBlocking(100) }
    tx.close()
    const view = batch.dataAt(0)`,
  'an XdpSocket slot': `
    const owner = XdpSocket.open(workerData[1], { mode: 'tx' })
    const view = owner.allocate(60).data`,
}
for (const [runtime, execPath] of runtimes) {
  for (const [what, setup] of Object.entries(workerLenders)) {
    for (const ending of ['ends', 'calls process.exit', 'is terminated']) {
      test(`${runtime}: ${what} marked untransferable in a worker that then ${ending}: no crash`, async (t) => {
        const veth = localVethPair(t)
        const worker = `
          const { parentPort, workerData, markAsUntransferable } = require('node:worker_threads')
          const { Capture, Injector, XdpSocket } = require(${JSON.stringify(process.cwd())})
          const dgram = require('node:dgram')
          ${frameFn}
          ;(async () => {
            ${setup}
            markAsUntransferable(view.buffer)
            globalThis.kept = view
            globalThis.owner = owner
            parentPort.postMessage('marked')
            if (workerData[2] === 'calls process.exit') process.exit(0)
            if (workerData[2] === 'is terminated') setInterval(() => {}, 1000)
          })()`
        const r = await runChild(
          `
          const { Worker } = require('node:worker_threads')
          const ending = ${JSON.stringify(ending)}
          const w = new Worker(${JSON.stringify(worker)}, { eval: true, workerData: [...process.argv.slice(1), ending] })
          let marked = false
          w.on('message', () => { marked = true; if (ending === 'is terminated') setTimeout(() => w.terminate(), 20) })
          w.on('error', (e) => console.error(e))
          w.on('exit', async (code) => {
            for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setTimeout(r, 10)) }
            console.log(JSON.stringify({ marked, code }))
          })`,
          [veth.a, veth.b],
          { execPath, nodeArgs: ['--expose-gc'] },
        )
        t.is(r.signal, null, r.stderr)
        t.false(r.timedOut)
        t.is(r.code, 0, r.stderr)
        t.like(lastJson(r), { marked: true })
      })
    }
  }
}

// Memory moved to a worker with a transfer list while the lender keeps receiving: the lender
// closes at its next call, and what the worker holds never changes after it was moved.
const receivers: Record<string, string> = {
  Capture: `Capture.open(process.argv[2], { blockTimeoutMs: 1, blockSize: 4096, blockCount: 4 })`,
  XdpSocket: `XdpSocket.open(process.argv[2], { mode: 'rx', frameCount: 64, ringSize: 32 })`,
}
for (const [runtime, execPath] of runtimes) {
  for (const [name, open] of Object.entries(receivers)) {
    test(`${runtime}: ${name} batch memory moved to a worker while traffic goes on: the worker's copy never changes`, async (t) => {
      const veth = localVethPair(t)
      const worker = `
        const { parentPort } = require('node:worker_threads')
        parentPort.on('message', ({ memory }) => {
          const view = new Uint8Array(memory), length = view.length, was = Buffer.from(view)
          let changes = 0, checks = 0
          const timer = setInterval(() => { checks++; if (view.length !== length || !was.equals(Buffer.from(view))) changes++ }, 2)
          setTimeout(() => { clearInterval(timer); parentPort.postMessage({ changes, checks, length }) }, 1000)
        })`
      const r = await runChild(
        `
        const { Worker } = require('node:worker_threads')
        const { Capture, Injector, XdpSocket } = require('netring')
        ${frameFn}
        const w = new Worker(${JSON.stringify(worker)}, { eval: true })
        const tx = Injector.open(process.argv[1])
        const owner = ${open}
        const result = { batches: 0, errors: [] }
        let seq = 0
        const sender = setInterval(() => { try { for (let i = 0; i < 20; i++) tx.send(frame(seq++)); tx.drain(100) } catch (e) { result.txError = e.code } }, 2)
        owner.on('error', (e) => result.errors.push(e.code))
        owner.on('batch', (batch) => {
          if (++result.batches !== 2) return
          const memory = ${name === 'Capture' ? 'batch.bytes.buffer' : 'batch.dataAt(0).buffer'}
          w.postMessage({ memory }, [memory])
        })
        w.on('message', (m) => {
          clearInterval(sender)
          Object.assign(result, m)
          result.closed = owner.closed
          try { owner.close() } catch {}
          tx.close()
          console.log(JSON.stringify(result))
          process.exit(0)
        })`,
        [veth.a, veth.b],
        { execPath },
      )
      t.is(r.signal, null, r.stderr)
      t.false(r.timedOut)
      t.is(r.code, 0, r.stderr)
      const result = lastJson<{ changes: number; checks: number; length: number }>(r)
      t.log(JSON.stringify(result))
      t.true(result.length > 0)
      t.true(result.checks > 100)
      t.is(result.changes, 0)
    })
  }
}
