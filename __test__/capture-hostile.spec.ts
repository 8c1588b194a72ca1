// The receive side as a hostile user drives it: odd numbers where descriptors and sizes go,
// options that change between the check and the use, a batch's own memory written over, a
// write that fails half-way through a block, lent batches buffered by a stream, files that are
// not files. Each must end in a typed NetringError (or the right result), never a crash, a
// Rust panic, a wrong descriptor or stale ring bytes in a file.

import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'
import { Capture, Injector, NetringError, type PacketBatch, PcapWriter, readCaptureFile, XdpSocket } from 'netring'

import { lastJson, runNode, within } from './helpers/child'
import { frame, vethPair } from './helpers/net'
import { readPcap } from './helpers/pcap'
import { waitFor } from './helpers/pool'

/** The batch's table of packet header offsets (internal: what the native file writer reads). */
const tableOf = (batch: PacketBatch) => (batch as unknown as { table: Uint32Array }).table

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'netring-hostile-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A capture holding a batch of `sizes.length` frames of those sizes, sent from the far end. */
async function heldBatch(t: ExecutionContext, sizes: number[]) {
  const veth = vethPair(t)
  // A long retire timeout keeps the frames (sent microseconds apart) in one block.
  const cap = Capture.open(veth.near, { blockTimeoutMs: 200 })
  t.teardown(() => cap.close())
  const sent = sizes.map((size, i) => frame(veth.nearMac, veth.farMac, size, i))
  await veth.send(sent)
  let batch: PacketBatch | null = null
  for (let tries = 0; tries < 50 && (batch?.length ?? 0) < sent.length; tries++) {
    const next = cap.nextBatchBlocking(100)
    if (next?.length) batch = next
  }
  if (batch?.length !== sent.length) throw new Error(`the ${sent.length} frames did not arrive in one batch`)
  return { veth, cap, batch, sent }
}

test('PcapWriter.open refuses a descriptor that is not a whole number >= 0 by name, and never panics', async (t) => {
  // NaN, Infinity and 2**53 used to become descriptor 0 and 1.5 descriptor 1 (the file went to
  // stdin or stdout); -1 was a Rust panic. Checked in a child: stdout is where 1.5 would write.
  const r = await runNode(`
    const { PcapWriter } = require('netring')
    const out = {}
    for (const [name, fd] of Object.entries({ nan: NaN, inf: Infinity, big: 2 ** 53, half: 1.5, neg: -1, negZero: -0.5, str: '' })) {
      try {
        PcapWriter.open(fd).close()
        out[name] = 'opened'
      } catch (e) {
        out[name] = [e.constructor.name, e.code, e.option]
      }
    }
    console.log(JSON.stringify(out))
  `)
  t.is(r.signal, null, r.stderr)
  t.is(r.code, 0, r.stderr)
  t.notRegex(r.stderr, /panicked/)
  const refused = ['NetringError', 'EINVAL', 'fd']
  t.deepEqual(lastJson(r), {
    nan: refused,
    inf: refused,
    big: refused,
    half: refused,
    neg: refused,
    negZero: refused,
    str: ['NetringError', 'EINVAL', 'path'],
  })
})

test('a block write that fails half-way leaves nothing behind: the next flush writes no record of it', async (t) => {
  // Frames of 600 bytes are written from the ring itself (not copied): a failed block used to
  // leave its first records queued, and the next flush wrote them from ring memory that had
  // gone back to the kernel.
  const { batch } = await heldBatch(t, [600, 600, 600])
  const file = join(tempDir(t), 'half.pcap')
  const w = PcapWriter.open(file, { format: 'pcap' })
  const table = tableOf(batch)
  const header = table[5]
  table[5] = 0xfffff000 // the second packet's header offset, outside the block
  t.throws(() => w.write(batch), { instanceOf: NetringError, code: 'EINVAL', message: /offset/ })
  table[5] = header
  t.is(w.packetsWritten, 0, 'no packet of the failed block counts as written')
  batch.release()
  w.flush()
  t.is(readPcap(readFileSync(file)).length, 0, 'nothing of the failed block reached the file')
  w.close()
  t.is(w.bytesWritten, 24, 'the file header only')
})

test("writable() copies a lent batch or packet it has to buffer: released before it is written, it is still written whole", async (t) => {
  const { batch, sent } = await heldBatch(t, [100, 200, 300])
  const file = join(tempDir(t), 'corked.pcap')
  const w = PcapWriter.open(file, { format: 'pcap' })
  const stream = w.writable()
  const errors: Error[] = []
  stream.on('error', (e) => errors.push(e))
  stream.cork()
  stream.write(batch)
  stream.write(batch.at(2)!)
  batch.release()
  stream.uncork()
  await new Promise<void>((resolve) => stream.end(resolve))
  t.deepEqual(errors, [])
  t.deepEqual(readPcap(readFileSync(file)), [...sent, sent[2]])
})

test("a packet header written over through the batch's own Buffer is an EIO NetringError, not a RangeError", async (t) => {
  const { batch } = await heldBatch(t, [100, 100])
  const packet = batch.at(1)!
  const words = new Uint32Array(batch.bytes.buffer)
  const snapLenWord = (tableOf(batch)[5] >> 2) + 3 // tp_snaplen of the second packet
  words[snapLenWord] = 0x7fffffff
  t.throws(() => packet.data, { instanceOf: NetringError, code: 'EIO', message: /header/ })
  t.throws(() => packet.copy(), { instanceOf: NetringError, code: 'EIO' })
  t.throws(() => batch.copy(), { instanceOf: NetringError, code: 'EIO' }, 'a batch copy reads the last header too')
  t.is(batch.at(0)!.data.length, 100, 'the packets whose headers are intact still read')
})

test('capture options are read once: a getter cannot change a value after it was checked', async (t) => {
  const veth = vethPair(t)
  let reads = 0
  const options = {
    get blockCount() {
      // Checked as 4; a second read would reach the ring as 2^32 + 2, which the binding wraps to 2.
      return reads++ === 0 ? 4 : 2 ** 32 + 2
    },
  }
  const cap = Capture.open(veth.near, options)
  t.teardown(() => cap.close())
  t.is(cap.info.blockCount, 4)
  t.is(reads, 1)
  // setFilter's instructions too: a field is read once, by the check, and that value is used.
  let codeReads = 0
  cap.setFilter([
    {
      get code() {
        return (codeReads++ === 0 ? 6 : 'not a number') as number
      },
      jt: 0,
      jf: 0,
      k: 0xffff,
    },
  ])
  t.is(codeReads, 1)
})

test('Injector and XdpSocket options are read once too, through the same check', async (t) => {
  const veth = vethPair(t)
  // A getter that answers the check with a valid count and a second read with a wrapping one.
  const flipping = (first: number) => {
    let reads = 0
    return {
      get frameCount() {
        return reads++ === 0 ? first : 2 ** 32 + 2
      },
      get reads() {
        return reads
      },
    }
  }
  const inj = flipping(64)
  const injector = Injector.open(veth.near, { get frameCount() { return inj.frameCount } })
  t.teardown(() => injector.close())
  t.is(injector.info.frameCount, 64)
  t.is(inj.reads, 1)
  const x = flipping(4096)
  const xsk = XdpSocket.open(veth.near, { get frameCount() { return x.frameCount } })
  t.teardown(() => xsk.close())
  t.is(xsk.info.frameCount, 4096)
  t.is(x.reads, 1)
})

test('readCaptureFile: a directory, a path that is no string and a bad info argument are NetringErrors naming what', async (t) => {
  const dir = tempDir(t)
  const e = await t.throwsAsync(
    (async () => {
      for await (const _ of readCaptureFile(dir));
    })(),
    { instanceOf: NetringError, code: 'EISDIR' },
  )
  t.regex(e!.message, new RegExp(dir))
  // Arguments of the wrong kind are refused by name, not a TypeError half-way through the file.
  const first = (path: unknown, info?: unknown) => readCaptureFile(path as string, info as never).next()
  t.is((await t.throwsAsync(first(3), { instanceOf: NetringError, code: 'EINVAL' }))!.option, 'path')
  t.is((await t.throwsAsync(first(dir, { interfaces: 5 }), { instanceOf: NetringError, code: 'EINVAL' }))!.option, 'info')
})

test('PcapWriter.write and close check what a packet-like object and the stats say, by name', (t) => {
  const dir = tempDir(t)
  const w = PcapWriter.open(join(dir, 'checked.pcap'), { format: 'pcap' })
  t.teardown(() => w.close())
  const packet = { data: Buffer.alloc(60, 1), direction: 'host' as const, timestamp: { sec: 1, nsec: 2 }, originalLength: 60 }
  const refused = (item: unknown, option: string) =>
    t.throws(() => w.write(item as never), { instanceOf: NetringError, code: 'EINVAL' })!.option === option
  // Each used to reach the file as another number (-1 as 4294967295, NaN as 0) or as a TypeError.
  t.true(refused(null, 'item'))
  t.true(refused({ ...packet, data: 'abc' }, 'data'))
  t.true(refused({ ...packet, timestamp: undefined }, 'timestamp'))
  t.true(refused({ ...packet, timestamp: { sec: -1, nsec: 0 } }, 'timestamp.sec'))
  t.true(refused({ ...packet, timestamp: { sec: 1, nsec: 1e9 } }, 'timestamp.nsec'))
  t.true(refused({ ...packet, timestamp: { sec: 1, nsec: NaN } }, 'timestamp.nsec'))
  t.true(refused({ ...packet, originalLength: 2 ** 40 }, 'originalLength'))
  t.is(w.packetsWritten, 0)
  w.write(packet as never)
  t.is(w.packetsWritten, 1)
  for (const [stats, option] of [
    [{ packets: NaN, drops: 0 }, 'stats.packets'],
    [{ packets: 1, drops: -1 }, 'stats.drops'],
    [5, 'stats'],
  ] as const) {
    t.is(t.throws(() => w.close(stats as never), { instanceOf: NetringError, code: 'EINVAL' })!.option, option)
  }
  w.close({ packets: 1, drops: 0 })
  t.is(readPcap(readFileSync(join(dir, 'checked.pcap'))).length, 1)
})

test("a 'packet' listener that replaces itself (once, or off then on) gets every packet", async (t) => {
  const veth = vethPair(t)
  const cap = Capture.open(veth.near, { blockTimeoutMs: 5 })
  t.teardown(() => cap.close())
  // A once listener adding the next: the last listener goes and another comes on every packet.
  // Delivery used to stop after the first batch, without an error.
  const chained: number[] = []
  cap.once('packet', function next(p) {
    chained.push(p.data.readUInt32BE(14))
    cap.once('packet', next)
  })
  const sendRound = (from: number) => veth.send(Array.from({ length: 20 }, (_, i) => frame(veth.nearMac, veth.farMac, 64, from + i)))
  // Several rounds, so that several batches (and waits between them) are crossed.
  for (let round = 0; round < 5; round++) await sendRound(round * 20)
  t.true(await waitFor(() => chained.length >= 100, 10_000), `once-chained listener got ${chained.length} of 100`)
  t.deepEqual(chained, Array.from({ length: 100 }, (_, i) => i))
  cap.removeAllListeners('packet')

  // off() then on() while the delivery loop waits for the ring.
  const first: number[] = []
  const second: number[] = []
  const a = (p: import('netring').Packet) => first.push(p.data.readUInt32BE(14))
  cap.on('packet', a)
  await new Promise((r) => setTimeout(r, 50))
  cap.off('packet', a)
  cap.on('packet', (p) => second.push(p.data.readUInt32BE(14)))
  await sendRound(1000)
  t.true(await waitFor(() => second.length >= 20, 10_000), `the replacing listener got ${second.length} of 20`)
  t.deepEqual(first, [])
  t.deepEqual(second, Array.from({ length: 20 }, (_, i) => 1000 + i))
})

test('return() on a batches() iterator waiting for a quiet ring ends it at once and frees the reader slot', async (t) => {
  const veth = vethPair(t)
  const cap = Capture.open(veth.near, { blockTimeoutMs: 5 })
  t.teardown(() => cap.close())
  const batches = cap.batches()
  const pending = batches.next()
  // An async generator queues return() behind the pending next(): on a quiet link that was for
  // ever, and every other reader got EBUSY meanwhile.
  t.is(await within(batches.return(undefined), 5000), 'resolved')
  t.deepEqual(await pending, { value: undefined, done: true })
  const next: number[] = []
  const reading = (async () => {
    for await (const p of cap.iterate({ limit: 3, signal: AbortSignal.timeout(10_000) })) next.push(p.data.readUInt32BE(14))
  })()
  await veth.send([0, 1, 2].map((i) => frame(veth.nearMac, veth.farMac, 64, i)))
  await reading
  t.deepEqual(next, [0, 1, 2], 'the next reader gets every packet')
})

test("a 'packet' listener that throws is an 'error', and delivery goes on with the next packet", async (t) => {
  const veth = vethPair(t)
  const cap = Capture.open(veth.near, { blockTimeoutMs: 5 })
  t.teardown(() => cap.close())
  const seen: number[] = []
  const errors: Error[] = []
  cap.on('error', (e) => errors.push(e))
  cap.on('packet', (p) => {
    const seq = p.data.readUInt32BE(14)
    seen.push(seq)
    if (seq === 2) throw new Error('a bug in the listener')
  })
  // Delivery used to end at the throw: the rest of the batch and everything after it went to
  // nobody while the listener stayed attached and the capture stayed claimed.
  for (let round = 0; round < 3; round++) {
    await veth.send(Array.from({ length: 20 }, (_, i) => frame(veth.nearMac, veth.farMac, 64, round * 20 + i)))
  }
  t.true(await waitFor(() => seen.length >= 60, 10_000), `the listener got ${seen.length} of 60`)
  t.deepEqual(seen, Array.from({ length: 60 }, (_, i) => i))
  t.deepEqual(
    errors.map((e) => e.message),
    ['a bug in the listener'],
  )
})

test('a held batch whose memory was moved away with transfer() reads as EPERM, not as undefined fields', async (t) => {
  if (!('transfer' in ArrayBuffer.prototype)) {
    t.is(Number(process.versions.node.split('.')[0]), 20, 'only Node 20 lacks ArrayBuffer.prototype.transfer')
    return
  }
  const { cap, batch } = await heldBatch(t, [100, 100])
  const packet = batch.at(0)!
  ;(batch.bytes.buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer()
  // Fields used to read as undefined (and timestampNs as a TypeError) until the next call.
  for (const read of [() => packet.length, () => packet.timestampNs, () => packet.direction, () => packet.data, () => batch.copy()]) {
    t.throws(read, { instanceOf: NetringError, code: 'EPERM', message: /moved away/ })
  }
  t.throws(() => cap.nextBatch(), { instanceOf: NetringError, code: 'EPERM' })
  t.true(cap.closed)
})

test('PcapWriter on a piped stdout (non-blocking in Node) waits for a slow reader instead of tearing the file with EAGAIN', async (t) => {
  // Node leaves a piped stdout O_NONBLOCK, and the writer's dup shares that flag: a full pipe
  // used to fail the write with EAGAIN half-way through a record.
  const script = `
    const { PcapWriter } = require('netring')
    process.stdout.write('')
    const w = PcapWriter.open(1, { format: 'pcap' })
    const data = Buffer.alloc(1400, 7)
    for (let i = 0; i < 2000; i++) w.write({ data, direction: 'host', timestamp: { sec: i, nsec: 0 }, originalLength: 1400 })
    w.close()
    process.stderr.write(JSON.stringify({ bytes: w.bytesWritten, packets: w.packetsWritten }))
  `
  const child = spawn(process.execPath, ['-e', script], { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'pipe'] })
  const closed = new Promise<[number | null, string | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])))
  const chunks: Buffer[] = []
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d))
  // A slow reader: nothing is read until the child has filled the pipe.
  child.stdout.pause()
  await new Promise((r) => setTimeout(r, 500))
  child.stdout.on('data', (d: Buffer) => chunks.push(d))
  child.stdout.resume()
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const [code, signal] = await closed
  clearTimeout(killer)
  t.is(signal, null, stderr)
  t.is(code, 0, stderr)
  const file = Buffer.concat(chunks)
  t.deepEqual(JSON.parse(stderr), { bytes: file.length, packets: 2000 })
  t.is(readPcap(file).length, 2000, 'every record whole')
})
