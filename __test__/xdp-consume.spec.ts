// Every way of reading an XdpSocket delivers the same frames: for await, packets() (sync),
// 'packet' and 'batch' events with pause/resume, stream(), and AbortSignal ends waits.

import test, { type ExecutionContext } from 'ava'
import { type OwnedXdpPacket, XdpSocket, type XdpPacketInfo } from 'netring'

import { frame, sleep, vethPair } from './helpers/net'
import { fromTest, XDP_TEST_SRC } from './helpers/xdp'

const COUNT = 40

async function opened(t: ExecutionContext) {
  const veth = vethPair(t)
  const xsk = XdpSocket.open(veth.near, { mode: 'rx' })
  t.teardown(() => xsk.close())
  const frames = Array.from({ length: COUNT }, (_, i) => frame(veth.nearMac, XDP_TEST_SRC, 64 + i, i))
  await veth.send(frames)
  return { xsk, frames }
}

const seqs = (ps: XdpPacketInfo[]) => ps.map((p) => p.data.readUInt32BE(14))
const all = Array.from({ length: COUNT }, (_, i) => i)

test('for await with a limit', async (t) => {
  const before = BigInt(Date.now()) * 1_000_000n
  const { xsk, frames } = await opened(t)
  const got: OwnedXdpPacket[] = []
  for await (const p of xsk.iterate({ signal: AbortSignal.timeout(10_000) })) {
    if (fromTest(p.data)) got.push(p.copy())
    if (got.length === COUNT) break
  }
  t.deepEqual(seqs(got), all)
  got.forEach((p, i) => t.true(p.data.equals(frames[i])))
  t.is(got[0].queue, 0)
  // When netring took the batch, on the wall clock (ns): between the test's start and now.
  const after = BigInt(Date.now()) * 1_000_000n
  for (const p of got) t.true(p.timestampNs >= before - 1_000_000n && p.timestampNs <= after + 1_000_000n, `${p.timestampNs} in [${before}, ${after}]`)
})

test('packets() synchronously, bounded by timeoutMs', async (t) => {
  const { xsk } = await opened(t)
  const got: OwnedXdpPacket[] = []
  for (const p of xsk.packets({ timeoutMs: 5000 })) {
    if (fromTest(p.data)) got.push(p.copy())
    if (got.length === COUNT) break
  }
  t.deepEqual(seqs(got), all)
})

test("'packet' and 'batch' events; pause() stops delivery and resume() goes on with what arrived meanwhile", async (t) => {
  const veth = vethPair(t)
  const xsk = XdpSocket.open(veth.near, { mode: 'rx' })
  t.teardown(() => xsk.close())
  const got: number[] = []
  let batches = 0
  xsk.on('batch', () => batches++)
  xsk.on('packet', (p) => {
    if (fromTest(p.data)) got.push(p.data.readUInt32BE(14))
  })
  await veth.send(Array.from({ length: COUNT }, (_, i) => frame(veth.nearMac, XDP_TEST_SRC, 64 + i, i)))
  for (let i = 0; i < 250 && got.length < COUNT; i++) await sleep(20)
  t.deepEqual(got, all)
  t.true(batches > 0)

  xsk.pause()
  t.true(xsk.isPaused)
  await veth.send(Array.from({ length: 5 }, (_, i) => frame(veth.nearMac, XDP_TEST_SRC, 64, 100 + i)))
  await sleep(200)
  t.is(got.length, COUNT, 'nothing delivered while paused')
  xsk.resume()
  for (let i = 0; i < 250 && got.length < COUNT + 5; i++) await sleep(20)
  t.deepEqual(got.slice(COUNT), [100, 101, 102, 103, 104], 'what arrived while paused, after resume')
  const closed = new Promise<void>((r) => xsk.once('close', r))
  xsk.close()
  await closed
})

test('pause() in a packet listener mid-batch and resume() 20 ms later: all 200 frames delivered, in order', async (t) => {
  const veth = vethPair(t)
  const xsk = XdpSocket.open(veth.near, { mode: 'rx' })
  t.teardown(() => xsk.close())
  const total = 200
  // Sent before anyone reads, so the first batch holds many frames and each pause falls inside one.
  await veth.send(Array.from({ length: total }, (_, i) => frame(veth.nearMac, XDP_TEST_SRC, 64, i)))
  const got: number[] = []
  let pauses = 0
  let largestBatch = 0
  const done = new Promise<void>((resolve) => {
    const deadline = setTimeout(resolve, 20_000)
    xsk.on('batch', (b) => (largestBatch = Math.max(largestBatch, b.length)))
    xsk.on('packet', (p) => {
      if (!fromTest(p.data)) return
      const seq = p.data.readUInt32BE(14)
      got.push(seq)
      if (seq % 40 === 5) {
        pauses++
        xsk.pause()
        setTimeout(() => xsk.resume(), 20)
      }
      if (got.length === total) {
        clearTimeout(deadline)
        resolve()
      }
    })
  })
  await done
  t.is(pauses, 5)
  t.true(largestBatch > 5, 'a pause fell inside a batch')
  t.deepEqual(
    got,
    Array.from({ length: total }, (_, i) => i),
  )
})

test('stream() yields owned packets; an AbortSignal ends it', async (t) => {
  const { xsk, frames } = await opened(t)
  const got: OwnedXdpPacket[] = []
  const controller = new AbortController()
  const stream = xsk.stream({ signal: controller.signal })
  try {
    for await (const p of stream as AsyncIterable<OwnedXdpPacket>) {
      if (fromTest(p.data)) got.push(p)
      if (got.length === COUNT) controller.abort()
    }
  } catch (e) {
    t.is((e as Error).name, 'AbortError')
  }
  t.deepEqual(seqs(got), all)
  got.forEach((p, i) => t.true(p.data.equals(frames[i]), 'owned copies outlive their batches'))
})

test('an AbortSignal ends a waiting for await with AbortError', async (t) => {
  const veth = vethPair(t)
  using xsk = XdpSocket.open(veth.near, { mode: 'rx' })
  const controller = new AbortController()
  const waiting = (async () => {
    for await (const p of xsk.iterate({ signal: controller.signal })) void p
  })()
  setTimeout(() => controller.abort(), 100)
  await t.throwsAsync(waiting, { name: 'AbortError' })
  t.false(xsk.closed)
})
