// A thread blocked in nextBatchBlocking() can always be stopped: worker.terminate() and
// process.exit() used to wait forever for it (nothing woke the poll). Each case runs in a
// child process, killed at a generous deadline if it hangs.

import test, { type ExecutionContext } from 'ava'

import { runNode } from './helpers/child'
import { vethPair } from './helpers/net'

/**
 * A script defining `blocked()`: starts a worker that opens `open` (an expression for a socket
 * receiving nothing), tells the parent it is about to block, and blocks with no limit.
 */
const blockedWorker = (open: string) => `
  const { Worker } = require('node:worker_threads')
  const blocked = () => new Promise((resolve, reject) => {
    const worker = new Worker(\`
      const { parentPort } = require('node:worker_threads')
      const { Capture, XdpSocket } = require('netring')
      const socket = ${open}
      parentPort.postMessage('blocking')
      socket.nextBatchBlocking()
      parentPort.postMessage('returned')
    \`, { eval: true })
    worker.once('error', reject)
    worker.once('message', (m) => (m === 'blocking' ? setTimeout(() => resolve(worker), 200) : reject(new Error(m))))
  })
`

// A capture receiving nothing: a filter that rejects every packet.
const CAPTURE = `Capture.open('lo', { filter: [{ code: 6, jt: 0, jf: 0, k: 0 }] })`

/** Three workers in turn, each blocked and then terminated: none may hang. */
async function terminatesBlockedWorkers(t: ExecutionContext, open: string): Promise<void> {
  const r = await runNode(
    `${blockedWorker(open)}
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
}

test('worker.terminate() ends a worker blocked in nextBatchBlocking()', async (t) => {
  await terminatesBlockedWorkers(t, CAPTURE)
})

test('process.exit() returns while a worker is blocked in nextBatchBlocking()', async (t) => {
  const r = await runNode(
    `${blockedWorker(CAPTURE)}
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
  await terminatesBlockedWorkers(t, `XdpSocket.open(${JSON.stringify(veth.near)}, { mode: 'rx' })`)
})
