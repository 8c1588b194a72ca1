// Every way of consuming a capture: sync iterator, async iterators, EventEmitter, stream.
// Waiting never blocks the event loop, and close() or an AbortSignal ends waiting cleanly.

import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import test from 'ava'
import { Capture, OwnedPacket, type Packet } from 'netring'

import { ours, seqOf } from './helpers/collect'
import { frame, sleep, vethPair } from './helpers/net'

const frames = (veth: ReturnType<typeof vethPair>, n: number, from = 0) =>
  Array.from({ length: n }, (_, i) => frame(veth.nearMac, veth.farMac, 100, from + i))

test('packets() iterates synchronously, with limit and an overall timeout', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near, { blockTimeoutMs: 1 })
  await veth.send(frames(veth, 10))
  let seen = 0
  for (const p of cap.packets({ limit: 10, timeoutMs: 5000 })) if (ours(p)) seen++
  t.is(seen, 10)
  const started = performance.now()
  for (const p of cap.packets({ timeoutMs: 200 })) if (ours(p)) t.fail('nothing more was sent')
  t.true(performance.now() - started >= 190, 'timeoutMs bounds the whole iteration')
  t.is([...cap.packets({ limit: 0 })].length, 0)
  const error = t.throws(() => cap.packets({ limit: -1 }).next(), { code: 'EINVAL' })
  t.is((error as { option?: string }).option, 'packets.limit')
})

test('close() ends a pending iteration cleanly, and then any later one', async (t) => {
  const veth = vethPair(t)
  const cap = Capture.open(veth.near)
  const ended = (async () => {
    for await (const p of cap) void p
    return 'packets ended'
  })()
  await sleep(50)
  cap.close()
  t.is(await ended, 'packets ended')
  for await (const b of cap.batches()) void b
  t.pass('batches() on a closed capture ends at once')
})

test('an AbortSignal ends the iteration with an AbortError; the capture stays usable', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near, { blockTimeoutMs: 1 })
  const controller = new AbortController()
  setTimeout(() => controller.abort(), 50)
  await t.throwsAsync(
    async () => {
      for await (const p of cap.iterate({ signal: controller.signal })) void p
    },
    { name: 'AbortError', code: 'ABORT_ERR' },
  )
  await t.throwsAsync(
    async () => {
      for await (const p of cap.batches({ signal: AbortSignal.abort() })) void p
    },
    { name: 'AbortError' },
  )
  await veth.send(frames(veth, 3))
  const got: number[] = []
  for await (const p of cap.iterate({ signal: AbortSignal.timeout(5000) })) {
    if (ours(p)) got.push(seqOf(p))
    if (got.length === 3) break
  }
  t.deepEqual(got, [0, 1, 2])
})

test('next() called again before the last call settled answers in order, like an async generator', async (t) => {
  const veth = vethPair(t)
  // One burst into one block (a 200 ms retire timeout), so that answering the later calls does
  // not move on to another batch, which would release the packets handed out before.
  using cap = Capture.open(veth.near, { blockTimeoutMs: 200 })
  const it = cap.iterate({ limit: 4, signal: AbortSignal.timeout(30_000) })
  const calls = Array.from({ length: 4 }, () => it.next().then((r) => (r.done ? 'done' : seqOf(r.value))))
  await sleep(20)
  await veth.send(frames(veth, 4))
  t.deepEqual(await Promise.all(calls), [0, 1, 2, 3])
  t.deepEqual(await it.next(), { value: undefined, done: true })
})

test('an AbortSignal fired inside the loop stops it at the next packet, not at the end of the batch', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near, { blockTimeoutMs: 50 })
  await veth.send(frames(veth, 20)) // one burst inside one 50 ms block
  const controller = new AbortController()
  let seen = 0
  await t.throwsAsync(
    async () => {
      for await (const p of cap.iterate({ signal: controller.signal })) {
        if (ours(p)) seen++
        controller.abort()
      }
    },
    { name: 'AbortError' },
  )
  t.is(seen, 1)
})

test('EventEmitter: delivery starts with the first listener; pause() and resume() work; close emits', async (t) => {
  const veth = vethPair(t)
  const cap = Capture.open(veth.near, { blockTimeoutMs: 1 })
  t.teardown(() => cap.close())
  const seqs: number[] = []
  let batches = 0
  cap.on('batch', () => batches++)
  cap.on('packet', (p: Packet) => {
    if (ours(p)) seqs.push(seqOf(p))
  })
  await veth.send(frames(veth, 20))
  for (let i = 0; i < 100 && seqs.length < 20; i++) await sleep(20)
  t.deepEqual(
    seqs,
    Array.from({ length: 20 }, (_, i) => i),
  )
  t.true(batches >= 1)

  cap.pause()
  t.true(cap.isPaused)
  await veth.send(frames(veth, 5, 100))
  await sleep(200)
  t.is(seqs.length, 20, 'nothing delivered while paused')
  cap.resume()
  for (let i = 0; i < 100 && seqs.length < 25; i++) await sleep(20)
  t.deepEqual(seqs.slice(20), [100, 101, 102, 103, 104], 'the packets that arrived while paused, after resume')

  const closed = new Promise<void>((r) => cap.once('close', r))
  cap.close()
  await closed
  t.pass()
})

test('stream() is an object-mode Readable of owned packets that works with pipeline', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near, { blockTimeoutMs: 1 })
  const received: OwnedPacket[] = []
  const sink = new Writable({
    objectMode: true,
    highWaterMark: 4, // a slow consumer: backpressure reaches the capture
    write(p: OwnedPacket, _enc, done) {
      if (ours(p)) received.push(p)
      setImmediate(done)
    },
  })
  const source = cap.stream({ highWaterMark: 8 })
  const piped = pipeline(source, sink)
  await veth.send(frames(veth, 200))
  for (let i = 0; i < 250 && received.length < 200; i++) await sleep(20)
  t.is(received.length, 200)
  t.true(received.every((p) => p instanceof OwnedPacket && p.data.length === 100))
  t.deepEqual(
    received.map((p) => seqOf(p)),
    Array.from({ length: 200 }, (_, i) => i),
  )
  // Destroying the stream ends the pipeline while the capture is still waiting.
  source.destroy()
  await t.throwsAsync(piped, { code: 'ERR_STREAM_PREMATURE_CLOSE' })
  t.false(cap.closed)
})

test('a stream ends when the capture closes', async (t) => {
  const veth = vethPair(t)
  const cap = Capture.open(veth.near)
  const source = cap.stream()
  const done = pipeline(source, new Writable({ objectMode: true, write: (_p, _e, cb) => cb() }))
  await sleep(50)
  cap.close()
  await t.notThrowsAsync(done)
})

test("a stream ends on its AbortSignal.timeout even when nothing else references the signal", async (t) => {
  using cap = Capture.open('lo')
  const source = cap.stream({ signal: AbortSignal.timeout(200) })
  const ended = (async () => {
    try {
      for await (const p of source) void p
      return 'ended without error'
    } catch (e) {
      return (e as Error).name
    }
  })()
  // Collect garbage while it waits: a signal held only weakly would be lost and never fire.
  for (let i = 0; i < 10; i++) {
    globalThis.gc!()
    await sleep(50)
  }
  t.is(await Promise.race([ended, sleep(3000).then(() => 'still running')]), 'AbortError')
})

test('closing the capture inside a for await loop ends it cleanly, mid-batch', async (t) => {
  const veth = vethPair(t)
  const cap = Capture.open(veth.near)
  await veth.send(frames(veth, 20))
  let seen = 0
  for await (const p of cap.iterate({ signal: AbortSignal.timeout(5000) })) {
    if (!ours(p)) continue
    seen++
    cap.close() // the batch still has packets; none of them may be handed out after this
  }
  t.is(seen, 1)
  t.true(cap.closed)
})
