// FanoutPool: worker threads, each with a capture in one fanout group, share an interface's
// traffic; every packet reaches exactly one worker, and the pool opens and closes as one object.

import test from 'ava'
import { Capture, FanoutPool, Injector, NetringError, type FanoutPoolOptions } from 'netring'

import { collect } from './helpers/collect'
import { localVethPair, udpFrame, vethPair, type VethPair } from './helpers/net'
import { poolMessages, waitFor } from './helpers/pool'

const collectHandler = new URL('./fixtures/fanout-collect.mjs', import.meta.url)
// Small rings (4 MiB) that still hold a third of a second of traffic nobody reads yet.
const small = { profile: 'low-memory', blockCount: 32, blockTimeoutMs: 10 } as const

/** `count` UDP frames over `flows` source ports, payload `${tag}${i}`. */
function flowFrames(veth: VethPair, count: number, flows: number, tag: string): Buffer[] {
  return Array.from({ length: count }, (_, i) =>
    udpFrame(veth.nearMac, veth.farMac, 20_000 + (i % flows), 9000, Buffer.from(`${tag}${i}`)),
  )
}

test("2 workers, mode 'hash': every packet exactly once, each flow on one worker, both get some", async (t) => {
  const veth = vethPair(t)
  const pool = await FanoutPool.open(veth.near, { workers: 2, handler: collectHandler, fanout: { mode: 'hash' }, capture: small })
  t.teardown(() => pool.close())
  t.is(pool.workers.length, 2)
  const got = poolMessages(pool)
  const sent = flowFrames(veth, 600, 48, 'h')
  await veth.send(sent)
  await waitFor(() => got.size >= sent.length, 10_000)
  const stats = await pool.close()

  t.is(got.size, sent.length, 'every packet arrived')
  t.deepEqual([...got.values()].filter((w) => w.workers.length !== 1), [], 'no packet twice')
  const portsOf = (index: number) => new Set([...got.values()].filter((w) => w.workers[0] === index).map((w) => w.port))
  const [ports0, ports1] = [portsOf(0), portsOf(1)]
  t.true(ports0.size > 0 && ports1.size > 0, `both workers got flows (${ports0.size} / ${ports1.size})`)
  t.deepEqual([...ports0].filter((p) => ports1.has(p)), [], 'no flow split between workers')
  // The kernel's counters, summed over the workers, count every frame sent: these are the only
  // IPv4 frames on a silent link, and nothing else was on it.
  t.is(stats.total.drops, 0)
  t.is(stats.total.handler.udp, sent.length)
  t.true(stats.total.packets >= sent.length, `kernel counted ${stats.total.packets} of ${sent.length}`)
  t.is(stats.workers[0].packets + stats.workers[1].packets, stats.total.packets)
  t.true(stats.workers.every((w) => w.packets > 0))
})

test('the kernel sends packets that arrive while members join to the members already in the group', async (t) => {
  // What a pool goes through while it opens, shown with two plain captures: a group spreads
  // packets over the members it has at that moment; nothing waits for the others.
  const veth = vethPair(t)
  using first = Capture.open(veth.near, { ...small, fanout: { group: 0, mode: 'hash', flags: ['uniqueId'] } })
  const group = first.info.fanoutGroup!
  await veth.send(flowFrames(veth, 100, 16, 'early'))
  using second = Capture.open(veth.near, { ...small, fanout: { group, mode: 'hash' } })
  t.is(second.info.fanoutGroup, group)
  await veth.send(flowFrames(veth, 300, 48, 'late'))
  const isUdp = (p: { protocol: number }) => p.protocol === 0x0800
  const [a, b] = await Promise.all([
    collect(first, 400, { timeoutMs: 3000, match: isUdp }),
    collect(second, 300, { timeoutMs: 3000, match: isUdp }),
  ])
  const tags = (ps: { data: Buffer }[], prefix: string) => ps.map((p) => p.data.subarray(42).toString()).filter((s) => s.startsWith(prefix))
  t.is(tags(a, 'early').length, 100, 'the only member got everything that came before the second joined')
  t.is(tags(b, 'early').length, 0)
  t.is(tags(a, 'late').length + tags(b, 'late').length, 300, 'after the join: every packet once')
  t.true(tags(a, 'late').length > 0 && tags(b, 'late').length > 0)
})

test('open() resolves once every worker has joined: what is sent from then on reaches each worker once', async (t) => {
  // Traffic runs while the pool opens. Frames sent after open() resolved must each reach exactly
  // one worker; frames sent during open() went to the members already joined, and one that came
  // between a member's bind and its join reached that member's ring too (the kernel does not hold
  // packets back while a group forms), so those are counted, not asserted.
  const veth = localVethPair(t)
  using tx = Injector.open(veth.a)
  let seq = 0
  const sendSome = () => {
    for (let i = 0; i < 16; i++, seq++) {
      tx.send(udpFrame(veth.bMac, veth.aMac, 30_000 + (seq % 32), 9000, Buffer.from(`j${seq}`)))
    }
    tx.flush()
  }
  const sender = setInterval(sendSome, 2)
  t.teardown(() => clearInterval(sender))
  let pool: FanoutPool
  try {
    // A ring that holds seconds of this trickle: the first worker's fills while the others start.
    pool = await FanoutPool.open(veth.b, { workers: 2, handler: collectHandler, capture: { profile: 'low-memory', blockCount: 64, blockTimeoutMs: 100 } })
  } finally {
    clearInterval(sender)
  }
  t.teardown(() => pool.close())
  const got = poolMessages(pool)
  const firstAfterOpen = seq
  for (let i = 0; i < 25; i++) sendSome()
  t.true(tx.drain(5000), 'every frame left')
  const last = seq
  await waitFor(() => [...got.keys()].filter((k) => Number(k.slice(1)) >= firstAfterOpen).length >= last - firstAfterOpen, 10_000)
  const final = await pool.close()
  t.is(final.total.drops, 0)
  const after = [...got.entries()].filter(([k]) => Number(k.slice(1)) >= firstAfterOpen)
  t.is(after.length, last - firstAfterOpen, 'every frame sent after open() arrived')
  t.deepEqual(after.filter(([, w]) => w.workers.length !== 1), [], 'each exactly once')
  t.true(new Set(after.map(([, w]) => w.workers[0])).size === 2, 'spread over both workers')
  const during = [...got.entries()].filter(([k]) => Number(k.slice(1)) < firstAfterOpen)
  t.log(`${firstAfterOpen} frames sent while the pool opened: ${during.length} captured, ${during.filter(([, w]) => w.workers.length > 1).length} twice`)
})

test("handler context: index, workerData, postMessage → 'message' with the worker", async (t) => {
  const veth = vethPair(t)
  await using pool = await FanoutPool.open(veth.near, { workers: 2, handler: collectHandler, workerData: { greeting: 'hello' }, capture: small })
  const messages = new Map<number, { value: unknown; threadId: number }>()
  pool.on('message', (value, worker) => messages.set(worker.index, { value, threadId: worker.threadId }))
  await veth.send(flowFrames(veth, 200, 32, 'ctx'))
  await waitFor(() => messages.size === 2, 10_000)
  t.deepEqual([...messages.keys()].sort(), [0, 1])
  for (const [index, { value, threadId }] of messages) {
    t.is((value as { index: number }).index, index)
    t.is(threadId, pool.workers[index].threadId)
  }
  t.true(pool.workers.every((w) => w.tid > 0 && w.cpu === null && w.pinError === null && w.restarts === 0))
})

// TypeScript handlers load where the worker thread's Node strips types itself (22.18 and later):
// loader hooks given with --import (tsx on Node 20) do not reach worker threads.
const stripsTypes = Boolean((process.features as { typescript?: unknown }).typescript)

test(`a TypeScript handler ${stripsTypes ? 'runs' : 'is a clear error on this Node'}`, async (t) => {
  const veth = vethPair(t)
  const options = {
    workers: 2,
    handler: new URL('./fixtures/fanout-typescript.ts', import.meta.url),
    workerData: { greeting: 'hello' },
    capture: small,
  }
  if (!stripsTypes) {
    const e = await t.throwsAsync(FanoutPool.open(veth.near, options), { instanceOf: NetringError, code: 'EINVAL' })
    t.is(e!.option, 'handler')
    t.regex(e!.hint!, /TypeScript/)
    return
  }
  await using pool = await FanoutPool.open(veth.near, options)
  const messages: unknown[] = []
  pool.on('message', (value) => messages.push(value))
  await waitFor(() => messages.length >= 2, 10_000)
  t.deepEqual(
    messages.sort((a, b) => (a as { index: number }).index - (b as { index: number }).index),
    [0, 1].map((index) => ({ greeting: 'hello', index, group: pool.group })),
  )
})

test('a CommonJS handler (.js) and a relative path work too', async (t) => {
  const veth = vethPair(t)
  const pool = await FanoutPool.open(veth.near, { workers: 1, handler: '__test__/fixtures/fanout-commonjs.js', capture: small })
  const message = new Promise((resolve) => pool.once('message', resolve))
  t.deepEqual(await message, { kind: 'commonjs', index: 0, interface: veth.near })
  const stats = await pool.close()
  t.is(stats.workers.length, 1)
})

test('close() is idempotent, resolves with final stats and emits close; `await using` closes too', async (t) => {
  const veth = vethPair(t)
  let disposed: FanoutPool
  {
    await using pool = await FanoutPool.open(veth.near, { workers: 2, handler: collectHandler, capture: small })
    disposed = pool
    const got = poolMessages(pool)
    await veth.send(flowFrames(veth, 50, 8, 'c'))
    await waitFor(() => got.size >= 50, 10_000)
    const closeEvents: unknown[] = []
    pool.on('close', (s) => closeEvents.push(s))
    const [a, b] = [pool.close(), pool.close()]
    t.is(a, b)
    const stats = await a
    t.is(stats.total.handler.udp, 50)
    t.deepEqual(await pool.close(), stats)
    t.deepEqual(closeEvents, [stats])
    t.true(pool.closed)
  }
  t.true(disposed.closed)
  {
    using pool = await FanoutPool.open(veth.near, { workers: 1, handler: collectHandler, capture: small })
    disposed = pool
  }
  t.true(disposed.closed, '`using` starts closing')
  await disposed.close()
})

const badOptions: [unknown, string, RegExp][] = [
  [{}, 'handler', /required/],
  [{ handler: collectHandler, workers: 0 }, 'workers', /from 1 to 256/],
  [{ handler: collectHandler, workers: 257 }, 'workers', /from 1 to 256/],
  [{ handler: collectHandler, workers: Infinity }, 'workers', /from 1 to 256/],
  [{ handler: collectHandler, workers: 1.5 }, 'workers', /integer/],
  [{ handler: collectHandler, workers: 'all' }, 'workers', /'auto'/],
  [{ handler: 42 }, 'handler', /path/],
  [{ handler: new URL('https://example.invalid/h.mjs') }, 'handler', /file: URL/],
  [{ handler: collectHandler, fanout: { mode: 'roundrobin' } }, 'fanout.mode', /hash/],
  [{ handler: collectHandler, fanout: { flags: ['defrag'] } }, 'fanout.mode', /required/],
  [{ handler: collectHandler, fanout: { mode: 'hash', group: 70_000 } }, 'fanout.group', /65535/],
  [{ handler: collectHandler, fanout: { mode: 'hash', group: 3, flags: ['uniqueId'] } }, 'fanout.group', /uniqueId/],
  [{ handler: collectHandler, fanout: { mode: 'hash', flags: ['fast'] } }, 'fanout.flags[0]', /defrag/],
  [{ handler: collectHandler, capture: { profile: 'fastest' } }, 'capture.profile', /high-throughput/],
  [{ handler: collectHandler, capture: { fanout: { group: 1, mode: 'hash' } } }, 'capture.fanout', /pool option/],
  [{ handler: collectHandler, pinCpus: 'yes' }, 'pinCpus', /boolean/],
  [{ handler: collectHandler, pinCpus: [0, -1] }, 'pinCpus[1]', /integer/],
  [{ handler: collectHandler, resourceLimits: { maxOldGenerationSizeMb: 'big' } }, 'resourceLimits.maxOldGenerationSizeMb', /number/],
  [{ handler: collectHandler, onWorkerExit: 'ignore' }, 'onWorkerExit', /restart/],
  [{ handler: collectHandler, closeTimeoutMs: -1 }, 'closeTimeoutMs', /non-negative/],
  [{ handler: collectHandler, workerData: { f: () => 1 } }, 'workerData', /cloneable/],
  [{ handler: collectHandler, workerData: { port: new MessageChannel().port1 } }, 'workerData', /cloneable/],
  [{ handler: collectHandler, speed: 'max' }, 'speed', /unknown option/],
]

for (const [options, option, why] of badOptions) {
  test(`bad option ${option} → NetringError EINVAL naming it (${JSON.stringify(options, (_, v) => (typeof v === 'function' ? 'fn' : v))})`, async (t) => {
    // Refused before any thread starts or any socket opens (lo would only ever be captured).
    const e = await t.throwsAsync(FanoutPool.open('lo', options as FanoutPoolOptions), { instanceOf: NetringError, code: 'EINVAL' })
    t.is(e!.option, option)
    t.regex(e!.message, why)
  })
}

test('a capture option the engine refuses fails the whole open, naming capture.<option>', async (t) => {
  const veth = vethPair(t)
  const e = await t.throwsAsync(FanoutPool.open(veth.near, { workers: 2, handler: collectHandler, capture: { blockSize: 1000 } }), {
    instanceOf: NetringError,
    code: 'EINVAL',
  })
  t.is(e!.option, 'capture.blockSize')
})

test('a handler that does not exist, or has no default export, is a clear error', async (t) => {
  const veth = vethPair(t)
  const missing = await t.throwsAsync(FanoutPool.open(veth.near, { handler: new URL('./fixtures/no-such-handler.mjs', import.meta.url) }), {
    instanceOf: NetringError,
    code: 'ENOENT',
  })
  t.is(missing!.option, 'handler')
  t.regex(missing!.message, /no-such-handler\.mjs does not exist/)
  t.regex(missing!.hint!, /import\.meta\.url/)
  const relative = await t.throwsAsync(FanoutPool.open(veth.near, { handler: 'nowhere/handler.mjs' }), { code: 'ENOENT' })
  t.regex(relative!.message, new RegExp(`${process.cwd()}/nowhere/handler.mjs`))
  const noDefault = await t.throwsAsync(
    FanoutPool.open(veth.near, { workers: 2, handler: new URL('./fixtures/fanout-no-default.mjs', import.meta.url) }),
    { instanceOf: NetringError, code: 'EINVAL' },
  )
  t.is(noDefault!.option, 'handler')
  t.regex(noDefault!.message, /no default export/)
})

test('a handler named by a file: URL string is loaded like a URL', async (t) => {
  const veth = vethPair(t)
  const pool = await FanoutPool.open(veth.near, { workers: 1, handler: collectHandler.href, capture: small })
  t.is(pool.workers.length, 1)
  await pool.close()
})

test('resourceLimits a thread cannot start with fail the open as NetringError naming resourceLimits', async (t) => {
  // Refused before any worker joins (lo would only ever be captured).
  const stack = await t.throwsAsync(FanoutPool.open('lo', { workers: 2, handler: collectHandler, resourceLimits: { stackSizeMb: 1e9 } }), {
    instanceOf: NetringError,
  })
  t.is(stack!.option, 'resourceLimits')
  t.is(stack!.code, 'EAGAIN')
  // (A heap too small for the thread to start at all is not tried here: Node 24 aborts the whole
  // process in the isolate's set-up, before any JavaScript can hear of it.)
})

test("workers: 'auto' starts one worker per CPU this process may use", async (t) => {
  const veth = vethPair(t)
  const { availableParallelism } = await import('node:os')
  const pool = await FanoutPool.open(veth.near, { handler: collectHandler, capture: small })
  t.is(pool.workers.length, availableParallelism())
  const stats = await pool.close()
  t.is(stats.workers.length, availableParallelism())
})
