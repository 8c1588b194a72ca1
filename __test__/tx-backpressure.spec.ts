// Sending far more than the ring holds loses nothing: sendAsync and the Writable wait for room.

import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import test from 'ava'
import { Capture, Injector, type OwnedPacket } from 'netring'

import { ours, seqOf } from './helpers/collect'
import { frame, localVethPair } from './helpers/net'

const TOTAL = 20_000

/** Counts our frames on `iface` until `want` arrived or 20 s passed; returns the sequence numbers. */
async function receive(cap: Capture, want: number): Promise<number[]> {
  const seqs: number[] = []
  try {
    for await (const batch of cap.batches({ signal: AbortSignal.timeout(20_000) })) {
      for (const p of batch) if (ours(p)) seqs.push(seqOf(p))
      if (seqs.length >= want) break
    }
  } catch (e) {
    if ((e as Error).name !== 'AbortError') throw e
  }
  return seqs
}

const inOrder = (n: number) => Array.from({ length: n }, (_, i) => i)

test('sendAsync: 20 000 frames through a 64-frame ring, none lost', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b, { profile: 'high-throughput' })
  using tx = Injector.open(veth.a, { frameCount: 64 })
  const received = receive(rx, TOTAL)
  for (let i = 0; i < TOTAL; i++) await tx.sendAsync(frame(veth.bMac, veth.aMac, 64, i))
  await tx.drained()
  t.like(tx.stats(), { sent: TOTAL, rejected: 0, pending: 0 })
  t.deepEqual(await received, inOrder(TOTAL))
  t.is(rx.stats().drops, 0)
})

test('many sendAsync calls at once all go out, each exactly once', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b, { profile: 'high-throughput' })
  using tx = Injector.open(veth.a, { frameCount: 64 })
  const received = receive(rx, 2000)
  // Not awaited one by one: 2000 senders compete for 64 slots.
  await Promise.all(Array.from({ length: 2000 }, (_, i) => tx.sendAsync(frame(veth.bMac, veth.aMac, 64, i))))
  await tx.drained()
  const seqs = await received
  t.is(seqs.length, 2000)
  t.deepEqual([...seqs].sort((a, b) => a - b), inOrder(2000), 'every frame exactly once')
})

test('the Writable honours backpressure: pipeline of 20 000 frames loses nothing', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b, { profile: 'high-throughput' })
  using tx = Injector.open(veth.a, { frameCount: 64 })
  const received = receive(rx, TOTAL)
  function* frames() {
    for (let i = 0; i < TOTAL; i++) yield frame(veth.bMac, veth.aMac, 64, i)
  }
  await pipeline(Readable.from(frames()), tx.writable())
  t.like(tx.stats(), { sent: TOTAL, pending: 0 })
  t.deepEqual(await received, inOrder(TOTAL))
})

test('pipeline(capture.stream(), transform, injector.writable()) forwards packets', async (t) => {
  const src = localVethPair(t)
  const dst = localVethPair(t)
  using rx = Capture.open(src.b, { blockTimeoutMs: 1 })
  using tx = Injector.open(dst.a)
  using sink = Capture.open(dst.b)
  const controller = new AbortController()
  const forwarded = pipeline(
    rx.stream({ signal: controller.signal }),
    async function* (packets: AsyncIterable<OwnedPacket>) {
      for await (const p of packets) if (ours(p)) yield p
    },
    tx.writable(),
  ).catch((e) => {
    if (e.name !== 'AbortError') throw e
  })
  const received = receive(sink, 500)
  using send = Injector.open(src.a)
  for (let i = 0; i < 500; i++) await send.sendAsync(frame(src.bMac, src.aMac, 100, i))
  t.deepEqual(await received, inOrder(500))
  controller.abort()
  await forwarded
})
