// What a hostile or careless user does to an XdpSocket, each in a child process so a crash or a
// hang fails the test instead of the suite: open/close churn on one queue racing the kernel's
// deferred release of that queue, descriptors that are not what they claim or are closed under
// the socket, and many sockets closed in any order.

import test from 'ava'
import { XdpSocket } from 'netring'

import { runNode } from './helpers/child'
import { vethPair } from './helpers/net'
import { attachedProgram, multiQueueVeth } from './helpers/xdp'

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

test("descriptors of the socket itself, of a Capture, of stdin or a pipe are EINVAL; a program fd closed right after open keeps working until close", async (t) => {
  const veth = vethPair(t)
  const r = await runNode(
    `
    const { closeSync } = require('node:fs')
    const { Capture, XdpSocket } = require('netring')
    const { native } = require('./dist/native.js')
    const dev = ${JSON.stringify(veth.near)}
    const codes = []
    const tryOpen = (program) => {
      try { XdpSocket.open(dev, { queue: 0, program }).close(); codes.push('opened') } catch (e) { codes.push(e.code + ' ' + e.option) }
    }
    const xsk = XdpSocket.open(dev, { program: 'none', mode: 'tx' })
    const capture = Capture.open(dev)
    for (const fd of [xsk.fd, capture.fd, 0, 1, 2]) { tryOpen({ fd }); tryOpen({ xskMap: fd }) }
    xsk.close(); capture.close()
    const p = native._testMakeXdpProgram({})
    tryOpen({ fd: p.program, xskMap: p.program })
    const own = XdpSocket.open(dev, { mode: 'rx', program: { fd: p.program } })
    for (const fd of [p.program, ...p.xskMaps, ...p.arrayMaps]) closeSync(fd)
    const attached = own.info.programId === p.programId
    own.nextBatch()
    own.close()
    console.log(JSON.stringify({ codes, attached }))
    `,
    { timeoutMs: 60_000 },
  )
  t.is(r.signal, null, r.stderr)
  t.is(r.code, 0, r.stderr)
  const invalid = ['EINVAL program.fd', 'EINVAL program.xskMap']
  t.deepEqual(r.result, { codes: [...Array(5).fill(invalid).flat(), 'EINVAL program.xskMap'], attached: true })
  t.is(attachedProgram(veth.near), undefined, 'no program stays after close')
})

test('four sockets on four queues closed in any order: one program while any is open, none after the last', async (t) => {
  const { near } = multiQueueVeth(t, 4)
  for (const order of [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]]) {
    const sockets = [0, 1, 2, 3].map((queue) => XdpSocket.open(near, { queue, mode: 'rx', frameCount: 64 }))
    t.is(new Set(sockets.map((s) => s.info.programId)).size, 1, 'one program shared')
    for (const [k, i] of order.entries()) {
      sockets[i].close()
      t.is(attachedProgram(near) === undefined, k === 3, `after closing ${k + 1} of 4 (${order})`)
    }
  }
})
