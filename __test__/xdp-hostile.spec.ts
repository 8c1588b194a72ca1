// What a hostile or careless user does to an XdpSocket, each in a child process so a crash or a
// hang fails the test instead of the suite: open/close churn on one queue racing the kernel's
// deferred release of that queue, descriptors that are not what they claim or are closed under
// the socket, and many sockets closed in any order.

import test from 'ava'
import { NetringError, XdpSocket } from 'netring'

import { runNode } from './helpers/child'
import { frame, vethPair } from './helpers/net'
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

test('TX slots: too short to hold a frame, a count of 0, a send of 0 bytes and a slot used after close are typed errors, never a quiet discard', async (t) => {
  const veth = vethPair(t)
  const xsk = XdpSocket.open(veth.near, { program: 'none', mode: 'tx', frameCount: 64, ringSize: 64 })
  const misuses: [string, () => unknown, string][] = [
    ['allocate(0)', () => xsk.allocate(0), 'length'],
    ['allocate(13)', () => xsk.allocate(13), 'length'],
    ['allocateRun(0, 60)', () => xsk.allocateRun(0, 60), 'count'],
    ['allocateRun(4, 10)', () => xsk.allocateRun(4, 10), 'length'],
  ]
  for (const [what, misuse, option] of misuses) {
    const e = t.throws(misuse, { instanceOf: NetringError }, what)
    t.like(e, { code: 'EINVAL', option }, what)
  }
  // Sending none of a slot's bytes is refused, and the frame goes back: the whole TX half is free.
  const slot = xsk.allocate(60)!
  t.like(t.throws(() => slot.send(0), { instanceOf: NetringError }), { code: 'EINVAL' })
  const frames = xsk.info.txFrames
  const runs = []
  for (let run = xsk.allocateRun(frames, 60); run; run = xsk.allocateRun(frames, 60)) runs.push(run)
  t.is(runs.reduce((n, run) => n + run.count, 0), frames, 'the refused slot came back')
  for (const run of runs) run.discard()
  // A frame sent afterwards still leaves, and only that one was counted.
  t.true(xsk.send(frame(veth.farMac, veth.nearMac, 60, 1)))
  xsk.flush()
  t.true(xsk.drain(10_000), 'the frame completed')
  t.is(xsk.stats().sent, 1)
  // A slot lent before close() and sent after it: the socket's EBADF, not "not lent".
  const late = xsk.allocate(60)!
  xsk.close()
  t.like(t.throws(() => late.send(), { instanceOf: NetringError }), { code: 'EBADF' })
})
