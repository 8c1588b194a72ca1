// XdpSocket lifetime and the zero-copy contract: lent Buffers detach on release, next batch and
// close; a frame JavaScript can still see is never handed back to the kernel; GC, worker
// termination and many open/close cycles leave nothing behind.

import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { Worker } from 'node:worker_threads'

import test from 'ava'
import { NetringError, XdpSocket } from 'netring'

import { fdCount, frame, localVethPair, vethPair } from './helpers/net'
import { attachedProgram, collectXdp, eventually, XDP_TEST_SRC } from './helpers/xdp'

const mappings = () => readFileSync('/proc/self/maps', 'utf8').split('\n').length

test('released, replaced and closed batches detach their Buffers; a batch lends only its own frames', async (t) => {
  const veth = vethPair(t)
  const xsk = XdpSocket.open(veth.near, { mode: 'rx' })
  await veth.send(Array.from({ length: 20 }, (_, i) => frame(veth.nearMac, XDP_TEST_SRC, 100, i)))
  const first = xsk.nextBatchBlocking(5000)
  t.truthy(first)
  const kept = first!.at(0)!
  const data = kept.data
  t.true(data.length > 0)
  t.is(
    first!.runs.reduce((sum, r) => sum + r.byteLength, 0),
    first!.length * xsk.info.frameSize,
    'the runs cover exactly one frame per packet of the batch',
  )
  t.true(data.buffer.byteLength <= first!.length * xsk.info.frameSize)
  const copy = kept.copy()
  first!.release()
  t.is(data.byteLength, 0, 'detached by release()')
  t.true(first!.runs.every((r) => r.byteLength === 0))
  t.is(kept.data.byteLength, 0)
  t.throws(() => kept.copy(), { instanceOf: NetringError, code: 'EBADF' })
  t.is(copy.data.length, 100, 'a copy outlives the batch')

  await veth.send(Array.from({ length: 4 }, (_, i) => frame(veth.nearMac, XDP_TEST_SRC, 100, 100 + i)))
  const second = xsk.nextBatchBlocking(5000)!
  const view = second.dataAt(0)
  const third = xsk.nextBatch()
  t.is(view.byteLength, 0, 'detached by taking the next batch')
  t.true(second.released)
  const last = third ?? xsk.nextBatchBlocking(100)
  const lastView = last?.dataAt(0)
  xsk.close()
  if (lastView) t.is(lastView.byteLength, 0, 'detached by close()')
})

test('frames of a held batch are never handed back to the kernel, however much traffic comes', async (t) => {
  const veth = vethPair(t)
  // 64 RX frames: far fewer than the frames sent while the batch is held.
  using xsk = XdpSocket.open(veth.near, { mode: 'rx', frameCount: 64, ringSize: 64, batchSize: 16 })
  const early = Array.from({ length: 16 }, (_, i) => frame(veth.nearMac, XDP_TEST_SRC, 1000, i))
  await veth.send(early)
  const held = xsk.nextBatchBlocking(5000)!
  t.true(held.length > 0)
  const views = Array.from({ length: held.length }, (_, i) => held.dataAt(i))
  // Every later frame carries other bytes: any overwrite would show.
  const flood = Array.from({ length: 400 }, (_, i) => frame(veth.nearMac, XDP_TEST_SRC, 1000, 10_000 + i).fill(0xee, 18))
  await veth.send(flood)
  t.true(
    await eventually(() => {
      const s = xsk.stats()
      return s.rxDropped + s.rxFillRingEmptyDescs > 0
    }),
    'the kernel ran out of fill frames (the held ones were not among them)',
  )
  views.forEach((v, i) => t.true(v.equals(early[i]), `held frame ${i} unchanged`))
  held.release()
  // After release, reading resumes with frames byte-exact.
  const rest = await collectXdp(xsk, 48, 5000)
  t.true(rest.length >= 1)
  for (const p of rest) {
    const seq = p.data.readUInt32BE(14)
    const expected = seq >= 10_000 ? flood[seq - 10_000] : early[seq]
    t.true(p.data.equals(expected), `frame ${seq} byte-exact`)
  }
})

test('using and await using close the socket and detach the program', async (t) => {
  const veth = vethPair(t)
  let outer: XdpSocket
  {
    using xsk = XdpSocket.open(veth.near)
    outer = xsk
    t.truthy(attachedProgram(veth.near))
  }
  t.true(outer.closed)
  t.is(attachedProgram(veth.near), undefined)
  {
    await using xsk = XdpSocket.open(veth.near)
    outer = xsk
  }
  t.true(outer.closed)
  t.is(attachedProgram(veth.near), undefined)
})

test.serial('200 open/close cycles leave no fd, mapping or program behind', (t) => {
  const veth = vethPair(t)
  const cycle = (i: number) => {
    const xsk = XdpSocket.open(veth.near, { mode: i % 2 ? 'rx' : 'rxtx', frameCount: 256, ringSize: 256 })
    void xsk.nextBatch()
    xsk.close()
  }
  for (let i = 0; i < 10; i++) cycle(i)
  globalThis.gc!()
  const fds = fdCount()
  const maps = mappings()
  for (let i = 0; i < 200; i++) cycle(i)
  globalThis.gc!()
  t.is(fdCount(), fds)
  // V8 maps and unmaps heap pages meanwhile; a leak would be 4 to 5 mappings per cycle (UMEM and rings).
  t.true(mappings() - maps < 100, `mappings grew from ${maps} to ${mappings()}`)
  t.is(attachedProgram(veth.near), undefined)
})

test('a socket collected without close() closes, detaches its program and harms nothing (child process)', async (t) => {
  const veth = vethPair(t)
  const script = `
    const { execFileSync } = require('node:child_process')
    const { XdpSocket } = require('netring')
    const shown = () => execFileSync('ip', ['-d', 'link', 'show', ${JSON.stringify(veth.near)}], { encoding: 'utf8' })
    ;(() => {
      const xsk = XdpSocket.open(${JSON.stringify(veth.near)})
      globalThis.kept = xsk.nextBatch()
      if (!shown().includes('prog/xdp')) throw new Error('no program while open')
    })()
    setTimeout(async () => {
      for (let i = 0; i < 100 && shown().includes('prog/xdp'); i++) {
        globalThis.gc()
        await new Promise((r) => setTimeout(r, 50))
      }
      console.log(shown().includes('prog/xdp') ? 'attached' : 'detached')
    }, 10)
  `
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '-e', script], {
    cwd: new URL('..', import.meta.url).pathname,
    timeout: 30_000,
  })
  t.is(stdout.trim(), 'detached')
})

test.serial('terminating a worker that holds an XdpSocket releases the queue and the program', async (t) => {
  const veth = vethPair(t)
  for (let i = 0; i < 3; i++) {
    const worker = new Worker(
      `
      const { parentPort } = require('node:worker_threads')
      const { XdpSocket } = require('netring')
      const xsk = XdpSocket.open(${JSON.stringify(veth.near)})
      parentPort.postMessage('ready')
      for (;;) xsk.nextBatchBlocking(10)
      `,
      { eval: true },
    )
    await new Promise((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    })
    await worker.terminate()
    t.true(await eventually(() => attachedProgram(veth.near) === undefined), 'program detached')
  }
  using again = XdpSocket.open(veth.near)
  t.false(again.closed)
})

test('a batch moved away with ArrayBuffer.prototype.transfer closes the socket instead of reaching the kernel', async (t) => {
  if (!('transfer' in ArrayBuffer.prototype)) {
    t.is(Number(process.versions.node.split('.')[0]), 20, 'only Node 20 lacks ArrayBuffer.prototype.transfer')
    return
  }
  const veth = vethPair(t)
  const xsk = XdpSocket.open(veth.near, { mode: 'rx' })
  await veth.send([frame(veth.nearMac, XDP_TEST_SRC, 200, 1)])
  const batch = xsk.nextBatchBlocking(5000)!
  const data = batch.dataAt(0)
  const at = batch.offsetAt(0)
  const moved = (batch.runs[0].buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer()
  t.true(moved.byteLength > 0)
  t.is(data.byteLength, 0, 'the original views are detached by the transfer')
  t.throws(() => xsk.nextBatch(), { code: 'EPERM', message: /transferred/ })
  t.true(xsk.closed)
  t.is(attachedProgram(veth.near), undefined, 'the socket and the program are gone')
  t.true(Buffer.from(moved, at, 200).equals(frame(veth.nearMac, XDP_TEST_SRC, 200, 1)), 'the moved memory stays mapped and readable')
})

test('where external buffers are refused, batches and slots are copies with the same API (NETRING_FORCE_COPY)', async (t) => {
  const veth = localVethPair(t)
  const script = `
    const { XdpSocket } = require('netring')
    const rx = XdpSocket.open(${JSON.stringify(veth.b)}, { mode: 'rx' })
    const tx = XdpSocket.open(${JSON.stringify(veth.a)}, { mode: 'tx' })
    const frame = Buffer.alloc(100, 0x5a); frame.fill(0xff, 0, 6); frame.writeUInt16BE(0x88b5, 12)
    const slot = tx.allocate(100); frame.copy(slot.data); slot.send(); tx.drain(2000)
    const batch = rx.nextBatchBlocking(5000)
    const data = batch.dataAt(0)
    const same = data.equals(frame)
    batch.release()
    console.log(JSON.stringify({ same, copyMode: rx.info.copyMode, detached: data.byteLength === 0 }))
    rx.close(); tx.close()
  `
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], {
    cwd: new URL('..', import.meta.url).pathname,
    env: { ...process.env, NETRING_FORCE_COPY: '1' },
    timeout: 30_000,
  })
  t.deepEqual(JSON.parse(stdout), { same: true, copyMode: true, detached: true })
})
