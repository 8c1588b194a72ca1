// Lifetime: dispose protocols, and many captures opened and closed leave no fds or memory behind.

import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

import test from 'ava'
import * as esm from 'netring'
import { Capture } from 'netring'

import { fdCount, ownPacketSockets } from './helpers/net'

test('using and await using close the capture', async (t) => {
  let outer: Capture
  {
    using cap = Capture.open('lo')
    outer = cap
    t.false(cap.closed)
  }
  t.true(outer.closed)
  {
    await using cap = Capture.open('lo')
    outer = cap
  }
  t.true(outer.closed)
})

test.serial('opening and closing many captures leaves fd count and RSS flat', (t) => {
  const open = () => Capture.open('lo', { profile: 'low-memory' })
  // Warm up allocators and the reactor thread before measuring.
  for (let i = 0; i < 20; i++) open().close()
  globalThis.gc!()
  const fds = fdCount()
  const rss = process.memoryUsage.rss()
  // Each open and close waits for RCU grace periods in the kernel (~30 ms), so the count is modest
  // here; `npm run bench` churns through many more.
  for (let i = 0; i < 200; i++) {
    const cap = open()
    void cap.nextBatch()
    cap.close()
  }
  globalThis.gc!()
  t.is(fdCount(), fds)
  const growth = process.memoryUsage.rss() - rss
  t.true(growth < 16 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB over 200 captures`)
})

test('import and require give the same classes (one copy of the package state)', (t) => {
  const cjs = createRequire(import.meta.url)('netring')
  t.is(cjs.Capture, esm.Capture)
  t.is(cjs.NetringError, esm.NetringError)
  t.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort())
})

test.serial('terminating a worker in the middle of a capture releases its socket and harms nothing', async (t) => {
  const before = ownPacketSockets()
  for (let i = 0; i < 3; i++) {
    const worker = new Worker(
      `
      const { Capture } = require('netring')
      const cap = Capture.open('lo', { blockTimeoutMs: 1 })
      ;(async () => { for await (const p of cap) globalThis.kept = p.data })()
      require('node:worker_threads').parentPort.postMessage('waiting')
    `,
      { eval: true },
    )
    await new Promise((r) => worker.once('message', r))
    await worker.terminate()
  }
  t.is(ownPacketSockets(), before)
  using cap = Capture.open('lo')
  t.false(cap.closed, 'this thread still captures')
})

test('forgotten captures are collected for the ring memory they hold, not only their small objects', async (t) => {
  // Each ring's size is reported to V8 as external memory, so opening capture after capture
  // without closing them makes the collector run and their finalizers close them. Without the
  // report the heap barely grows and every ring stays mapped. In a child: its own heap and fds.
  const { runNode, lastJson } = await import('./helpers/child')
  const r = await runNode(`
    const { Capture } = require('netring')
    const fs = require('node:fs')
    const packetSockets = () => fs.readdirSync('/proc/self/fd').filter((fd) => {
      try { return fs.readlinkSync('/proc/self/fd/' + fd).startsWith('socket:') } catch { return false }
    }).length
    ;(async () => {
      const before = packetSockets()
      for (let i = 0; i < 24; i++) {
        Capture.open('lo', { blockSize: 1 << 22, blockCount: 4 })
        await new Promise((r) => setImmediate(r))
      }
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
      console.log(JSON.stringify({ open: packetSockets() - before }))
    })()
  `)
  t.is(r.code, 0, r.stderr)
  const { open } = lastJson<{ open: number }>(r)
  t.true(open < 24, `${open} of 24 forgotten captures still open`)
})
