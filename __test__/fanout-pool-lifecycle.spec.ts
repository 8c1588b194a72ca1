// FanoutPool lifecycle: handlers that throw, workers that die and come back into the same group,
// closing under traffic and closing handlers that do not listen.

import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'
import { FanoutPool, type FanoutPoolOptions, type FanoutWorkerInfo } from 'netring'

import { udpFrame, vethPair, type VethPair } from './helpers/net'
import { poolMessages, waitFor } from './helpers/pool'

const handler = new URL('./fixtures/fanout-misbehave.mjs', import.meta.url)
const small = { profile: 'low-memory', blockCount: 32, blockTimeoutMs: 10 } as const

function open(veth: VethPair, behaviour: Record<number, string>, options: Partial<FanoutPoolOptions> = {}, marker?: string) {
  return FanoutPool.open(veth.near, { workers: 2, handler, capture: small, workerData: { behaviour, marker }, ...options })
}

function flowFrames(veth: VethPair, count: number, tag: string): Buffer[] {
  return Array.from({ length: count }, (_, i) => udpFrame(veth.nearMac, veth.farMac, 40_000 + (i % 48), 9000, Buffer.from(`${tag}${i}`)))
}

/** Whether a thread of this process with the kernel id `tid` still exists. */
const threadAlive = (tid: number) => existsSync(`/proc/self/task/${tid}`)

test("a handler that throws is an 'error' with its worker's index, and the worker restarts", async (t) => {
  const veth = vethPair(t)
  const pool = await open(veth, { 1: 'throw' })
  t.teardown(() => pool.close())
  const before = pool.workers[1]
  const errors: [Error & { code?: string; workerIndex?: number }, FanoutWorkerInfo][] = []
  const restarts: FanoutWorkerInfo[] = []
  pool.on('error', (e, w) => errors.push([e, w]))
  pool.on('restart', (w) => restarts.push(w))
  await waitFor(() => restarts.length >= 1, 10_000)
  const [error, worker] = errors[0]
  t.is(error.name, 'RangeError')
  t.is(error.message, 'handler 1 gave up')
  t.is(error.code, 'E_TEST')
  t.is(error.workerIndex, 1)
  t.regex(error.stack!, /fanout-misbehave\.mjs/)
  t.is(worker.index, 1)
  t.is(restarts[0].index, 1)
  t.is(restarts[0].restarts, 1)
  t.not(restarts[0].threadId, before.threadId)
  t.true(errors.every(([, w]) => w.index === 1), 'worker 0 is not touched')
  await pool.close()
})

test('a worker that exits is reported, and its replacement rejoins the same group', async (t) => {
  const veth = vethPair(t)
  const dir = mkdtempSync(join(tmpdir(), 'netring-pool-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const pool = await open(veth, { 1: 'exit-once' }, {}, join(dir, 'exited'))
  t.teardown(() => pool.close())
  const errors: [Error, FanoutWorkerInfo][] = []
  const exits: number[] = []
  pool.on('error', (e, w) => errors.push([e, w]))
  pool.on('exit', (_, code) => exits.push(code))
  const restarted = new Promise<FanoutWorkerInfo>((resolve) => pool.once('restart', resolve))
  const worker = await restarted
  t.deepEqual(exits, [3])
  t.is(errors.length, 1)
  t.is(errors[0][1].index, 1)
  t.regex(errors[0][0].message, /exited with code 3/)
  t.is(worker.restarts, 1)

  // The new member is in the same group: the traffic is shared, not duplicated or lost.
  const got = poolMessages(pool)
  const sent = flowFrames(veth, 600, 'r')
  await veth.send(sent)
  await waitFor(() => got.size >= sent.length, 10_000)
  const stats = await pool.close()
  t.is(got.size, sent.length, 'every packet arrived')
  t.deepEqual([...got.values()].filter((w) => w.workers.length !== 1), [], 'none twice')
  t.true(new Set([...got.values()].map((w) => w.workers[0])).size === 2, 'both workers, the new one too, got flows')
  t.is(stats.workers[1].restarts, 1)
  t.is(stats.total.handler.udp, sent.length)
})

test("onWorkerExit: 'close' closes the pool when a worker's handler throws", async (t) => {
  const veth = vethPair(t)
  const pool = await open(veth, { 0: 'throw' }, { onWorkerExit: 'close' })
  const errors: number[] = []
  pool.on('error', (_, w) => errors.push(w.index))
  const closed = new Promise((resolve) => pool.once('close', resolve))
  const stats = await closed
  t.true(pool.closed)
  t.deepEqual(errors, [0])
  t.deepEqual(await pool.close(), stats)
  t.true(pool.workers.every((w) => !threadAlive(w.tid)))
})

test('close() during heavy traffic ends every worker cleanly, with final counts', async (t) => {
  const veth = vethPair(t)
  const pool = await open(veth, {})
  const errors: Error[] = []
  pool.on('error', (e) => errors.push(e))
  const got = poolMessages(pool)
  const flood = veth.send(flowFrames(veth, 30_000, 'f'))
  await waitFor(() => got.size >= 1000, 10_000)
  const stats = await pool.close()
  await flood
  t.deepEqual(errors, [])
  t.true(got.size >= 1000)
  // What the handlers counted is what their rings delivered before they stopped.
  t.true(stats.total.packets >= stats.total.handler.udp)
  t.true(pool.workers.every((w) => !threadAlive(w.tid)), 'every worker thread is gone')
})

test('close() terminates handlers that ignore their signal once the bound has passed', async (t) => {
  const veth = vethPair(t)
  // Worker 0 awaits something else forever; worker 1 spins in JavaScript and never yields.
  const pool = await open(veth, { 0: 'ignore-signal', 1: 'spin' }, { closeTimeoutMs: 500 })
  const messages = new Set<unknown>()
  pool.on('message', (m) => messages.add(m))
  await waitFor(() => messages.size === 2, 10_000)
  t.deepEqual([...messages].sort(), ['spinning', 'waiting'])
  const tids = pool.workers.map((w) => w.tid)
  t.true(tids.every(threadAlive))
  await pool.close()
  t.deepEqual(tids.filter(threadAlive), [], 'both threads are gone')
})

test('a handler blocked in nextBatchBlocking() or packets() is released by close(), not terminated', async (t) => {
  const veth = vethPair(t)
  // A long bound: the handlers must end by themselves, well before it.
  const pool = await open(veth, { 0: 'block', 1: 'packets' }, { closeTimeoutMs: 60_000 })
  const messages = new Set<unknown>()
  pool.on('message', (m) => messages.add(m))
  await waitFor(() => messages.has('blocking') && messages.has('iterating'), 10_000)
  await veth.send(flowFrames(veth, 200, 'b'))
  await pool.close()
  t.true(messages.has('unblocked'), 'nextBatchBlocking() returned null and the handler went on')
  t.true(messages.has('iterated'), 'packets() ended')
})

test('closeTimeoutMs: Infinity waits for a handler however long it takes (no 1 ms setTimeout)', async (t) => {
  const veth = vethPair(t)
  const pool = await open(veth, { 0: 'finish-late', 1: 'finish-late' }, { closeTimeoutMs: Infinity })
  const messages: unknown[] = []
  pool.on('message', (m) => messages.push(m))
  await waitFor(() => messages.length === 2, 10_000)
  await pool.close()
  t.deepEqual(messages, ['running', 'running', 'finished', 'finished'], 'both handlers returned by themselves')
})

test("a handler's error that is hard to send (a throwing getter, a stack that is a function) is still reported", async (t) => {
  const veth = vethPair(t)
  const pool = await open(veth, { 0: 'throw-odd' }, { onWorkerExit: 'close' })
  const errors: [Error, number][] = []
  pool.on('error', (e, w) => errors.push([e, w.index]))
  await new Promise((resolve) => pool.once('close', resolve))
  t.is(errors.length, 1)
  t.is(errors[0][0].message, 'odd error')
  t.is(errors[0][1], 0)
})

test("close() while a worker restarts: the replacement ends with the pool, no 'error' after close", async (t) => {
  const veth = vethPair(t)
  const dir = mkdtempSync(join(tmpdir(), 'netring-pool-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const marker = join(dir, 'started')
  process.env.NETRING_SLOW_RESTART_MARKER = marker
  t.teardown(() => delete process.env.NETRING_SLOW_RESTART_MARKER)
  const pool = await FanoutPool.open(veth.near, {
    workers: 1,
    handler: new URL('./fixtures/fanout-slow-restart.mjs', import.meta.url),
    capture: small,
    closeTimeoutMs: 0,
  })
  const errors: [string, boolean][] = []
  pool.on('error', (e) => errors.push([e.message, pool.closed]))
  t.true(await waitFor(() => existsSync(`${marker}.loading`), 15_000), 'the replacement is loading')
  await pool.close()
  await new Promise((resolve) => setImmediate(resolve))
  t.deepEqual(errors, [['first thread gives up', false]])
})

test("stats(): each worker's kernel counters, drops and freezes included, add up to what was sent", async (t) => {
  const veth = vethPair(t)
  // Handlers that never read, and small rings: most of a burst is dropped by the kernel.
  const pool = await open(veth, { 0: 'ignore-signal', 1: 'ignore-signal' }, { capture: { profile: 'low-memory', blockTimeoutMs: 10 }, closeTimeoutMs: 2000 })
  const sent = flowFrames(veth, 12_000, 'd')
  await veth.send(sent)
  const stats = await pool.close()
  t.is(stats.total.packets + stats.total.drops, sent.length, 'every frame sent is counted once, kept or dropped')
  t.true(stats.workers.every((w) => w.drops > 0 && w.freezeCount > 0), JSON.stringify(stats.workers))
  t.is(stats.total.drops, stats.workers[0].drops + stats.workers[1].drops)
  t.is(stats.total.freezeCount, stats.workers[0].freezeCount + stats.workers[1].freezeCount)
})
