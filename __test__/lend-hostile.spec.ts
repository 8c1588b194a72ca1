// Hostile use of lent ring memory (Capture and XdpSocket batches, transmit slots) that the
// untransferable and capture-detach specs do not cover: memory moved to another thread that
// outlives the thread that lent it, and ArrayBuffer.prototype.transfer replaced after netring
// loaded. Each case runs in a child, under this Node and under Node 24 when it is present.

import test from 'ava'

import { lastJson, runChild, runtimes } from './helpers/child'
import { localVethPair } from './helpers/net'

// In a worker: `memory` (an ArrayBuffer over lent memory) and `off`, then it is posted to the
// main thread with a transfer list and the worker ends (argv[1], argv[2]: a local veth pair).
const lenders: Record<string, string> = {
  'a Capture batch': `
    const s = dgram.createSocket('udp4')
    await new Promise((r) => s.bind(0, '127.0.0.1', r))
    const owner = Capture.open('lo', { blockTimeoutMs: 1 })
    for (let i = 0; i < 3; i++) await new Promise((r) => s.send('moved', s.address().port, '127.0.0.1', r))
    s.close()
    const data = [...owner.nextBatchBlocking(5000)][0].data`,
  'an Injector slot': `
    const owner = Injector.open(workerData[0])
    const data = owner.allocate(60).data`,
}

for (const [runtime, execPath] of runtimes) {
  for (const [what, setup] of Object.entries(lenders)) {
    test(`${runtime}: ${what} moved out of the worker that lent it, written after that worker ended: no crash`, async (t) => {
      const veth = localVethPair(t)
      const worker = `
        const { parentPort, workerData } = require('node:worker_threads')
        const { Capture, Injector } = require(${JSON.stringify(process.cwd())})
        const dgram = require('node:dgram')
        ;(async () => {
          ${setup}
          parentPort.postMessage({ memory: data.buffer, off: data.byteOffset }, [data.buffer])
        })()`
      const r = await runChild(
        `
        const { Worker } = require('node:worker_threads')
        const w = new Worker(${JSON.stringify(worker)}, { eval: true, workerData: process.argv.slice(1) })
        let got = null
        w.on('message', (m) => (got = m))
        w.on('exit', async () => {
          for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setTimeout(r, 10)) }
          const view = new Uint8Array(got.memory)
          const moved = view.byteLength > 0
          // The worker's exit ran Node's cleanup hook for the buffer it lent, which called its
          // finalizer: the ring went away under memory this thread still holds.
          view[got.off] ^= 0xff
          const sum = view.reduce((a, b) => a + b, 0)
          console.log(JSON.stringify({ moved, sum }))
        })
      `,
        [veth.a, veth.b],
        { execPath, nodeArgs: ['--expose-gc'] },
      )
      t.is(r.signal, null, r.stderr)
      t.false(r.timedOut)
      t.is(r.code, 0, r.stderr)
      t.truthy(lastJson(r))
    })
  }
}

// ArrayBuffer.prototype.transfer replaced after netring loaded (the facade keeps the one it
// found at load, as must the binding): a replacement that moves the buffer into a stash and
// detaches nothing else would make a take back hand ring memory the stash shows to the kernel.
const stashing = `
  const real = ArrayBuffer.prototype.transfer
  const stash = []
  ArrayBuffer.prototype.transfer = function (length) {
    if (length === 0 && real && this.byteLength > 0) {
      const moved = real.call(this)
      stash.push({ moved, was: Buffer.from(moved).toString('latin1') })
      return new ArrayBuffer(0)
    }
    return real ? real.apply(this, arguments) : this.slice(0, length)
  }`

for (const [runtime, execPath] of runtimes) {
  test(`${runtime}: transfer replaced after netring loaded cannot stash an XdpSocket batch`, async (t) => {
    const veth = localVethPair(t)
    const r = await runChild(
      `
      const { Injector, XdpSocket } = require('netring')
      ${stashing}
      const owner = XdpSocket.open(process.argv[2], { mode: 'rx', frameCount: 64, ringSize: 32 })
      const tx = Injector.open(process.argv[1])
      const frame = (seq) => { const f = Buffer.alloc(60); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12); f.write('SEQ' + String(seq).padStart(4, '0'), 20); return f }
      const result = { threw: false }
      try {
        for (let seq = 0; seq < 200; seq++) {
          tx.send(frame(seq)); tx.drain(1000)
          const batch = owner.nextBatchBlocking(100)
          if (batch) { batch.dataAt(0); batch.release() }
        }
      } catch (e) { result.threw = e.code }
      // Stashed memory the kernel wrote into after the batch was handed back.
      result.changed = stash.filter(({ moved, was }) => Buffer.from(moved).toString('latin1') !== was).length
      result.stashed = stash.length
      tx.close(); owner.close()
      console.log(JSON.stringify(result))
    `,
      [veth.a, veth.b],
      { execPath },
    )
    t.is(r.signal, null, r.stderr)
    t.is(r.code, 0, r.stderr)
    const result = lastJson<{ changed: number; stashed: number }>(r)
    t.log(JSON.stringify(result))
    t.is(result.changed, 0, JSON.stringify(result))
  })
}

// Node 20 has no ArrayBuffer.prototype.transfer; a polyfill (core-js's: a copy, then a
// structuredClone transfer list to detach the original, which Node 20 copies instead for a
// Node-API external buffer) must not make netring treat every batch as markAsUntransferable.
for (const [runtime, execPath] of runtimes) {
  test(`${runtime}: a polyfilled ArrayBuffer.prototype.transfer does not close the capture`, async (t) => {
    const r = await runChild(
      `
      if (typeof ArrayBuffer.prototype.transfer !== 'function') {
        ArrayBuffer.prototype.transfer = function (length = this.byteLength) {
          const copy = new ArrayBuffer(length)
          new Uint8Array(copy).set(new Uint8Array(this, 0, Math.min(length, this.byteLength)))
          try { structuredClone(this, { transfer: [this] }) } catch {}
          return copy
        }
      }
      const { Capture } = require('netring')
      const dgram = require('node:dgram')
      ;(async () => {
        const s = dgram.createSocket('udp4')
        await new Promise((r) => s.bind(0, '127.0.0.1', r))
        const cap = Capture.open('lo', { blockTimeoutMs: 1 })
        const result = { threw: false }
        try {
          for (let i = 0; i < 3; i++) {
            await new Promise((r) => s.send('polyfill', s.address().port, '127.0.0.1', r))
            const batch = cap.nextBatchBlocking(2000)
            if (batch) batch.release()
          }
        } catch (e) { result.threw = e.code; result.message = e.message }
        result.closed = cap.closed
        s.close(); try { cap.close() } catch {}
        console.log(JSON.stringify(result))
      })()
    `,
      [],
      { execPath },
    )
    t.is(r.signal, null, r.stderr)
    t.is(r.code, 0, r.stderr)
    t.like(lastJson(r), { threw: false, closed: false })
  })
}
