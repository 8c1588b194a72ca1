// Ring memory handed to asynchronous native APIs: a job on the thread pool may hold a pointer
// into the ring after the batch is released or the capture closed. The process must never
// fault on it (the closed ring's range becomes an inert private mapping, never unmapped
// address space), and lent Buffers cover packet bytes only, never a word the kernel reads.
// Crashes are tested in child processes.

import test from 'ava'

import { lastJson, runNode } from './helpers/child'

/** A child that fills a big ring from lo with UDP, then runs `body` with `cap` and `batch`. */
function withFullBatch(body: string): string {
  return `
    const { Capture } = require('netring')
    const dgram = require('node:dgram')
    const zlib = require('node:zlib')
    const result = {}
    ;(async () => {
      const s = dgram.createSocket('udp4')
      await new Promise((r) => s.bind(0, '127.0.0.1', r))
      const port = s.address().port
      const payload = Buffer.alloc(1400, 7)
      const openFull = async () => {
        const cap = Capture.open('lo', { blockSize: 1 << 22, blockCount: 4, blockTimeoutMs: 200 })
        for (let i = 0; i < 400; i++) await new Promise((r) => s.send(payload, port, '127.0.0.1', r))
        const batch = cap.nextBatchBlocking(5000)
        if (!batch) throw new Error('no batch')
        return { cap, batch }
      }
      ${body}
      s.close()
    })().then(() => console.log(JSON.stringify(result)), (e) => { console.error(e); process.exit(3) })
  `
}

test('an async native job reading a batch survives close() and collection of the ring', async (t) => {
  const r = await runNode(
    withFullBatch(`
      let done = 0
      for (let round = 0; round < 6; round++) {
        const { cap, batch } = await openFull()
        // Four jobs fill the thread pool; each reads the whole block while we close.
        const jobs = []
        // One chunk per job (chunkSize above the input): the job reads the ring on the thread
        // pool in a single pass. With several chunks, Node itself checks the input again between
        // them and, finding it detached, aborts (Node 20, node_zlib.cc) or throws (Node 24):
        // Node's handling of a view released under it, not a fault on ring memory.
        const whole = { level: 9, chunkSize: 16 << 20 }
        for (let j = 0; j < 4; j++) jobs.push(new Promise((res) => zlib.deflate(batch.bytes, whole, () => res())))
        const first = [...batch][0]
        jobs.push(new Promise((res) => zlib.gzip(first.data, whole, () => res())))
        cap.close()
        globalThis.gc()
        await Promise.all(jobs)
        done++
      }
      result.rounds = done
    `),
  )
  t.is(r.signal, null, r.stderr)
  t.false(r.timedOut)
  t.is(r.code, 0, r.stderr)
  t.is(lastJson<{ rounds: number }>(r).rounds, 6)
})

test('copy mode: a slot run whose buffer was moved away and collected is refused, never read', async (t) => {
  // NETRING_FORCE_COPY=1 is the Electron path: slots are copies written back at send. Before
  // the fix, send() copied from the freed copy (SIGSEGV or garbage on the wire).
  const r = await runNode(
    `
    const { Injector } = require('netring')
    const result = {}
    const tx = Injector.open('lo', { frameCount: 256 })
    result.copyMode = tx.info.slotCapacity > 0
    for (let round = 0; round < 10; round++) {
      // 128 slots of 1500 bytes: a copy large enough to be unmapped when it is collected.
      const run = tx.allocateRun(128, 1500)
      const view = run.slot(0)
      structuredClone(view.buffer, { transfer: [view.buffer] })
      globalThis.gc()
      if (round % 2) {
        run.discard()
        result.discarded = (result.discarded ?? 0) + 1
      } else {
        try { run.send(); result.sent = true } catch (e) { result.code = e.code }
      }
      const slot = tx.allocate(1500)
      structuredClone(slot.data.buffer, { transfer: [slot.data.buffer] })
      globalThis.gc()
      try { slot.send(); result.slotSent = true } catch (e) { result.slotCode = e.code }
      tx.drain(5000)
    }
    // The ring goes on: the refused slots went back, a plain send still works.
    const f = Buffer.alloc(60); f.writeUInt16BE(0x88b5, 12)
    result.after = tx.send(f)
    result.drained = tx.drain(5000)
    result.pending = tx.stats().pending
    tx.close()
    console.log(JSON.stringify(result))
    `,
    { env: { NETRING_FORCE_COPY: '1' } },
  )
  t.is(r.signal, null, r.stderr)
  t.false(r.timedOut)
  t.is(r.code, 0, r.stderr)
  t.deepEqual(lastJson(r), { copyMode: true, code: 'EPERM', discarded: 5, slotCode: 'EPERM', after: true, drained: true, pending: 0 })
})

test("a held batch's Buffers cannot reach the block descriptor: writing through them never hands the block back", async (t) => {
  const { Capture } = await import('netring')
  const dgram = await import('node:dgram')
  const cap = Capture.open('lo', { blockSize: 1 << 16, blockCount: 4, blockTimeoutMs: 1 })
  const s = dgram.createSocket('udp4')
  t.teardown(() => {
    cap.close()
    s.close()
  })
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()))
  const port = s.address().port
  const send = async (n: number) => {
    for (let i = 0; i < n; i++) await new Promise((r) => s.send(Buffer.alloc(1000, i & 0xff), port, '127.0.0.1', r))
  }
  await send(5)
  const batch = cap.nextBatchBlocking(5000)
  t.truthy(batch)
  const packets = [...batch!]
  const copies = packets.map((p) => Buffer.from(p.data))
  // Before: word 2 of the block was its status; clearing it gave the held block to the kernel.
  const words = new Uint32Array(packets[0]!.data.buffer)
  words[2] = 0
  // Cycle the ring many times over (4 blocks of 64 KiB; 600 datagrams of 1 KiB).
  await send(600)
  t.false(batch!.released)
  packets.forEach((p, i) => t.deepEqual(p.data, copies[i], `packet ${i} is unchanged while its batch is held`))
})

test('header words a slot run can reach never reach the kernel: discarded slots stay unsent', async (t) => {
  const { Capture, Injector } = await import('netring')
  const { localVethPair, frame } = await import('./helpers/net')
  const { collect, seqOf } = await import('./helpers/collect')
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b, { blockTimeoutMs: 1 })
  using tx = Injector.open(veth.a, { frameCount: 64 })
  const TX_DATA_OFFSET = 48 // tpacket3_hdr + sockaddr_ll - sizeof(sockaddr_ll) on x86_64
  let seq = 0
  const expected: number[] = []
  for (let round = 0; round < 8; round++) {
    const run = tx.allocateRun(4, 100)!
    t.truthy(run)
    t.true(run.count >= 2, 'a run of at least two slots')
    const whole = new DataView(run.slot(0).buffer)
    for (let i = 0; i < run.count; i++) {
      frame(veth.bMac, veth.aMac, 100, seq + i).copy(run.slot(i))
      if (i === 0) continue
      // The header of slot i sits just before its data, inside the run's memory: pretend to be
      // the engine and ask the kernel to send it (tp_len, tp_snaplen, tp_status).
      const h = run.slot(i).byteOffset - TX_DATA_OFFSET
      if (h < 0) continue
      whole.setUint32(h + 16, 100, true)
      whole.setUint32(h + 12, 100, true)
      whole.setUint32(h + 20, 1, true)
    }
    run.send(1)
    expected.push(seq)
    seq += run.count
    t.true(tx.drain(5000))
  }
  const got = await collect(rx, expected.length + 1, { timeoutMs: 3000 })
  t.deepEqual(got.map((p) => seqOf(p)), expected, 'only the slots sent, none of those discarded')
  t.is(tx.stats().pending, 0)
})
