// Hostile use of lent ring memory (Capture and XdpSocket batches, transmit slots) that the
// untransferable and capture-detach specs do not cover: memory moved to another thread that
// outlives the thread that lent it, and ArrayBuffer.prototype.transfer replaced after netring
// loaded. Each case runs in a child, under this Node and under Node 24 when it is present.

import { existsSync } from 'node:fs'

import test from 'ava'

import { lastJson, runChild } from './helpers/child'
import { localVethPair } from './helpers/net'

const node24 = new URL('../.ci/tools/node_modules/.bin/node', import.meta.url).pathname
const runtimes: [string, string][] = [['this Node', process.execPath]]
if (existsSync(node24)) runtimes.push(['Node 24', node24])

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
