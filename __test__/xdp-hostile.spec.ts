// What a hostile or careless user does to an XdpSocket, each in a child process so a crash or a
// hang fails the test instead of the suite: open/close churn on one queue racing the kernel's
// deferred release of that queue.

import test from 'ava'

import { runNode } from './helpers/child'
import { vethPair } from './helpers/net'

test('open/close churn on one queue never meets the queue still busy from its own last close, even with the CPUs busy', async (t) => {
  const veth = vethPair(t)
  // The kernel gives a closed socket's queue back from a work queue; two busy threads stand in
  // for a loaded machine, where that lags well beyond a short bind retry.
  const r = await runNode(
    `
    const { Worker } = require('node:worker_threads')
    const { XdpSocket } = require('netring')
    const spin = 'const end = Date.now() + 60000; while (Date.now() < end) {}'
    const load = [0, 1].map(() => new Worker(spin, { eval: true }))
    let opened = 0, failure = null
    for (let i = 0; i < 300 && !failure; i++) {
      try {
        XdpSocket.open(${JSON.stringify(veth.near)}, { program: i % 2 ? 'none' : 'builtin' }).close()
        opened++
      } catch (e) {
        failure = { code: e.code, message: e.message }
      }
    }
    Promise.all(load.map((w) => w.terminate())).then(() => console.log(JSON.stringify({ opened, failure })))
    `,
    { timeoutMs: 120_000 },
  )
  t.false(r.timedOut, r.stderr)
  t.is(r.signal, null, r.stderr)
  t.is(r.code, 0, r.stderr)
  t.deepEqual(r.result, { opened: 300, failure: null })
})
