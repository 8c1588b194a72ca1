// The zero-copy contract: while a batch is held its Buffers read the ring; once it is released
// (explicitly, by taking the next batch, by leaving a loop, or by close()) every Buffer over it
// is detached before the kernel may reuse the block. Nothing JavaScript keeps can see the ring
// after that.

import { execFileSync } from 'node:child_process'
import { readlinkSync } from 'node:fs'

import test, { type ExecutionContext } from 'ava'
import { Capture, type NetringError, type PacketBatch } from 'netring'

import { frame, vethPair } from './helpers/net'

/** Sends `n` frames and returns the batch holding them. */
async function batchOf(t: ExecutionContext, n = 3) {
  const veth = vethPair(t)
  // The kernel retires a block on its timer, which may fire between two of the frames (they are
  // sent microseconds apart): with a 1 ms timer CI once saw the first frame alone in a batch.
  // At 200 ms that window is two hundred times less likely to be hit.
  const cap = Capture.open(veth.near, { blockTimeoutMs: 200 })
  t.teardown(() => cap.close())
  const sent = Array.from({ length: n }, (_, i) => frame(veth.nearMac, veth.farMac, 200 + i, i))
  await veth.send(sent)
  let batch: PacketBatch | null = null
  for (let tries = 0; tries < 50 && !batch?.length; tries++) batch = cap.nextBatchBlocking(100)
  if (!batch) throw new Error('no batch arrived')
  return { veth, cap, batch, sent }
}

test('release() detaches every Buffer of the batch; its packets can no longer be read', async (t) => {
  const { batch, sent } = await batchOf(t)
  const packets = [...batch]
  const views = packets.map((p) => p.data)
  const slices = views.map((d) => d.subarray(1, 5))
  const whole = batch.bytes
  t.deepEqual(views[0], sent[0], 'while held, data is the frame')
  t.true(whole.byteLength > 0)
  t.deepEqual(
    packets.map((p) => p.length),
    sent.map((f) => f.length),
  )

  batch.release()
  t.true(batch.released)
  for (const v of [...views, ...slices, whole]) t.is(v.byteLength, 0)
  t.is(views[0].buffer.byteLength, 0, 'the ArrayBuffer itself is detached')
  t.is(packets[0].data.length, 0, 'data asked for after release is empty')
  t.is(batch.bytes.length, 0)
  // Metadata lives in the ring too: reading it now is an error, never stale or foreign data.
  for (const read of [() => packets[0].length, () => packets[0].timestampNs, () => packets[0].protocol, () => packets[0].copy()]) {
    t.throws(read, { code: 'EBADF', message: /released/ })
  }
  t.is(batch.length, sent.length, 'the batch still says how many packets it had')
  batch.release() // idempotent
})

test('taking the next batch, leaving a loop and close() each detach what was handed out', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near, { blockTimeoutMs: 1 })
  const send = (seq: number) => veth.send([frame(veth.nearMac, veth.farMac, 120, seq)])

  await send(1)
  let first: PacketBatch | null = null
  while (!first) first = cap.nextBatchBlocking(1000)
  const firstData = [...first][0].data
  t.true(firstData.length > 0)
  await send(2)
  let second: PacketBatch | null = null
  while (!second) second = cap.nextBatchBlocking(1000)
  t.is(firstData.byteLength, 0, 'nextBatch released the previous batch')
  t.true(first.released)

  await send(3)
  let kept: Buffer | undefined
  for await (const p of cap) {
    kept = p.data
    t.true(kept.length > 0)
    break
  }
  t.is(kept!.byteLength, 0, 'leaving the loop released the batch')

  await send(4)
  let last: PacketBatch | null = null
  while (!last) last = cap.nextBatchBlocking(1000)
  const lastData = last.bytes
  cap.close()
  t.is(lastData.byteLength, 0, 'close() released the batch')
})

test('copy() gives owned packets that outlive the batch and the capture', async (t) => {
  const { cap, batch, sent } = await batchOf(t)
  const owned = [...batch].map((p) => p.copy())
  cap.close()
  t.deepEqual(owned[0].data, sent[0])
  t.is(owned[0].length, sent[0].length)
  t.is(typeof owned[0].timestampNs, 'bigint')
})

for (const [name, move] of [
  ['structuredClone', (ab: ArrayBuffer) => structuredClone(ab, { transfer: [ab] })],
  ['postMessage', (ab: ArrayBuffer) => {
    const { port1, port2 } = new MessageChannel()
    port1.postMessage(ab, [ab])
    port1.close()
    port2.close()
  }],
] as const) {
  test(`${name} with a transfer list either leaves ring memory where it is or closes the capture`, async (t) => {
    // Node 20 gives a lent block Node's own untransferable mark: the move is refused (or sends
    // a copy) and the capture goes on. Where ArrayBuffer.prototype.transfer exists, the binding
    // lends a buffer without that mark (see src/lent_buffer.rs: Node's exit hook would abort the
    // process on a marked one), so the move succeeds, as transfer() does: the capture notices at
    // its next call and closes its socket, so the kernel never writes into the moved memory.
    const { cap, batch } = await batchOf(t)
    const ab = batch.bytes.buffer as ArrayBuffer
    try {
      move(ab)
    } catch (e) {
      t.is((e as Error).name, 'DataCloneError')
    }
    if (ab.byteLength > 0) {
      t.false('transfer' in ArrayBuffer.prototype, 'refused only where transfer() does not exist')
      batch.release()
      t.is(ab.byteLength, 0)
      t.false(cap.closed)
      return
    }
    t.throws(() => cap.nextBatch(), { code: 'EPERM', message: /transferred/ })
    t.true(cap.closed)
  })
}

test('a batch moved away with ArrayBuffer.prototype.transfer closes the capture instead of reaching the kernel', async (t) => {
  // transfer() cannot be refused (markAsUntransferable would also make the detach on release
  // abort the process on Node >= 22), so the capture notices at release and closes its socket:
  // the kernel never writes into memory the moved ArrayBuffer shows.
  if (!('transfer' in ArrayBuffer.prototype)) {
    t.is(Number(process.versions.node.split('.')[0]), 20, 'only Node 20 lacks ArrayBuffer.prototype.transfer')
    return
  }
  const { cap, batch } = await batchOf(t)
  let closes = 0
  cap.on('close', () => closes++)
  const data = [...batch][0].data
  const moved = (batch.bytes.buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer()
  t.true(moved.byteLength > 0)
  t.is(data.byteLength, 0, 'the original views are detached by the transfer')
  const e = t.throws<NetringError>(() => cap.nextBatch(), { code: 'EPERM', message: /transferred/ })
  t.is(e?.interface, cap.interface, 'the error names the interface')
  t.true(cap.closed)
  t.true(batch.released)
  t.is(closes, 1, "'close' once the capture closed itself")
  t.is(cap.fd, -1)
  t.throws(() => cap.nextBatch(), { code: 'EBADF' })
  cap.close()
  t.is(closes, 1, 'close() afterwards emits nothing twice')
})

test('where external buffers are refused, batches are copies with the same API and detach, and transmit slots still send', (t) => {
  // NETRING_FORCE_COPY=1 takes the path runtimes like Electron take (napi_no_external_buffers_allowed).
  const out = execFileSync(process.execPath, [new URL('./fixtures/copy-mode.mjs', import.meta.url).pathname], {
    env: { ...process.env, NETRING_FORCE_COPY: '1' },
    encoding: 'utf8',
    timeout: 30_000,
  })
  const result = JSON.parse(out)
  t.deepEqual(result, { copyMode: true, matched: true, detachedAfterRelease: true, txSlotsArrived: 'run0,run1,single' })
})

test('a collected capture that was never closed releases its socket', async (t) => {
  const veth = vethPair(t)
  const fd = (() => {
    const cap = Capture.open(veth.near)
    return cap.fd
  })()
  t.true(fd >= 0)
  const isPacketSocket = () => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')
    } catch {
      return false
    }
  }
  t.true(isPacketSocket())
  for (let i = 0; i < 50 && isPacketSocket(); i++) {
    globalThis.gc!()
    await new Promise((r) => setTimeout(r, 20))
  }
  t.false(isPacketSocket(), 'the fd was closed by the finalizer')
})
