// A thread blocked in nextBatchBlocking() can always be stopped: worker.terminate() and
// process.exit() used to wait forever for it (nothing woke the poll). Each case runs in a
// child process, killed at a generous deadline if it hangs.

import test from 'ava'

import { runNode } from './helpers/child'
import { vethPair } from './helpers/net'

// A worker that opens a capture receiving nothing (a filter that rejects every packet), tells
// the parent it is about to block, and blocks with no limit.
const BLOCKED_WORKER = `
  const { Worker } = require('node:worker_threads')
  const blocked = () => new Promise((resolve, reject) => {
    const worker = new Worker(\`
      const { parentPort } = require('node:worker_threads')
      const { Capture } = require('netring')
      const cap = Capture.open('lo', { filter: [{ code: 6, jt: 0, jf: 0, k: 0 }] })
      parentPort.postMessage('blocking')
      cap.nextBatchBlocking()
      parentPort.postMessage('returned')
    \`, { eval: true })
    worker.once('error', reject)
    worker.once('message', () => setTimeout(() => resolve(worker), 200))
  })
`

test('worker.terminate() ends a worker blocked in nextBatchBlocking()', async (t) => {
  const r = await runNode(
    `${BLOCKED_WORKER}
    ;(async () => {
      for (let i = 0; i < 3; i++) {
        const worker = await blocked()
        const code = await worker.terminate()
        console.log('terminated', code)
      }
    })().catch((e) => { console.error(e); process.exit(3) })
    `,
    { timeoutMs: 60_000 },
  )
  t.false(r.timedOut, 'terminate() hung')
  t.is(r.signal, null, r.stderr)
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout.trim().split('\n').filter((l) => l === 'terminated 1').length, 3)
})

test('process.exit() returns while a worker is blocked in nextBatchBlocking()', async (t) => {
  const r = await runNode(
    `${BLOCKED_WORKER}
    blocked().then(() => process.exit(7), (e) => { console.error(e); process.exit(3) })
    `,
    { timeoutMs: 60_000 },
  )
  t.false(r.timedOut, 'process.exit() hung')
  t.is(r.signal, null, r.stderr)
  t.is(r.code, 7, r.stderr)
})

test('worker.terminate() ends a worker blocked in XdpSocket nextBatchBlocking()', async (t) => {
  // A veth of its own, silent (IPv6 off, nothing sent): the socket receives nothing.
  const veth = vethPair(t)
  const r = await runNode(
    `
    const { Worker } = require('node:worker_threads')
    const blocked = () => new Promise((resolve, reject) => {
      const worker = new Worker(\`
        const { parentPort } = require('node:worker_threads')
        const { XdpSocket } = require('netring')
        const xsk = XdpSocket.open(${JSON.stringify(veth.near)}, { mode: 'rx' })
        parentPort.postMessage('blocking')
        xsk.nextBatchBlocking()
        parentPort.postMessage('returned')
      \`, { eval: true })
      worker.once('error', reject)
      worker.once('message', (m) => (m === 'blocking' ? setTimeout(() => resolve(worker), 200) : reject(new Error(m))))
    })
    ;(async () => {
      for (let i = 0; i < 3; i++) {
        const worker = await blocked()
        const code = await worker.terminate()
        console.log('terminated', code)
      }
    })().catch((e) => { console.error(e); process.exit(3) })
    `,
    { timeoutMs: 60_000 },
  )
  t.false(r.timedOut, 'terminate() hung')
  t.is(r.signal, null, r.stderr)
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout.trim().split('\n').filter((l) => l === 'terminated 1').length, 3)
})
