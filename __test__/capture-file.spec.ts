// Capture files: what netring writes, tshark and tcpdump read with identical frames, lengths,
// nanosecond timestamps, direction, interface name and kernel counts; what they write, netring
// reads back the same; broken files are typed errors.

import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import test, { type ExecutionContext } from 'ava'
import { Capture, NetringError, type OwnedPacket, PcapWriter, readCaptureFile, type FileFormat } from 'netring'

import { frame, sendFrames, vethPair } from './helpers/net'
import { tcpdump } from './helpers/pcap'
import { epochOf, tsharkFrames, tsharkInterfaceStats } from './helpers/tshark'
import { mixedTraffic } from './helpers/traffic'

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'netring-file-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function readAll(path: string): Promise<OwnedPacket[]> {
  const out: OwnedPacket[] = []
  for await (const p of readCaptureFile(path)) out.push(p)
  return out
}

/**
 * Live traffic both ways on a veth pair (inbound from the far end, outbound from ours), with a
 * snap length that truncates the long frames. `each` sees every batch while it is held.
 */
async function liveCapture(t: ExecutionContext, each: (batch: import('netring').PacketBatch, cap: Capture) => void) {
  const veth = vethPair(t)
  const cap = Capture.open(veth.near, { snapLen: 200 })
  t.teardown(() => cap.close())
  const inbound = mixedTraffic(veth.nearMac, veth.farMac)
  const outbound = Array.from({ length: 20 }, (_, i) => frame(veth.farMac, veth.nearMac, 64 + i * 50, i))
  await veth.send(inbound)
  await sendFrames(undefined, veth.near, outbound)
  const want = inbound.length + outbound.length
  const copies: OwnedPacket[] = []
  const signal = AbortSignal.timeout(10_000)
  try {
    for await (const batch of cap.batches({ signal })) {
      for (const p of batch) copies.push(p.copy())
      each(batch, cap)
      if (copies.length >= want) break
    }
  } catch (e) {
    if ((e as Error).name !== 'AbortError') throw e
  }
  t.is(copies.length, want, 'every frame was captured')
  return { veth, cap, copies }
}

function sameAsTshark(t: ExecutionContext, file: string, copies: OwnedPacket[], opts: { nanos: boolean; pcapng: boolean; iface?: string }) {
  const frames = tsharkFrames(file)
  t.is(frames.length, copies.length)
  frames.forEach((f, i) => {
    const p = copies[i]
    t.deepEqual(f.bytes, p.data, `frame ${i} bytes`)
    t.is(f.capLen, p.length)
    t.is(f.len, p.originalLength)
    const nsec = opts.nanos ? p.timestamp.nsec : Math.floor(p.timestamp.nsec / 1000) * 1000
    t.is(f.epoch, epochOf({ sec: p.timestamp.sec, nsec }), `frame ${i} time`)
    if (opts.pcapng) {
      t.is(f.interfaceName, opts.iface ?? '')
      t.is(f.direction, p.direction === 'outgoing' ? 2 : 1, `frame ${i} direction`)
    }
  })
  t.true(copies.some((p) => p.direction === 'outgoing') && copies.some((p) => p.direction !== 'outgoing'))
  t.true(copies.some((p) => p.length < p.originalLength), 'some frames were truncated by snapLen')
}

test('pcapng from whole batches (native writev path): tshark reads every frame, time, direction, name and the kernel counts', async (t) => {
  const file = join(tempDir(t), 'live.pcapng')
  let writer: PcapWriter | undefined
  const { veth, cap, copies } = await liveCapture(t, (batch, c) => {
    writer ??= PcapWriter.open(file, { format: 'pcapng', interface: c.info.interface, snapLen: 200 })
    writer.write(batch)
  })
  const stats = cap.stats()
  writer!.close(stats)
  t.is(writer!.packetsWritten, copies.length)
  sameAsTshark(t, file, copies, { nanos: true, pcapng: true, iface: veth.near })
  t.deepEqual(tsharkInterfaceStats(file), { received: stats.packets, dropped: stats.drops })
  t.true(stats.packets >= copies.length)
  // And netring reads back what it wrote.
  const back = await readAll(file)
  t.deepEqual(
    back.map((p) => [p.data, p.originalLength, p.timestampNs, p.direction === 'outgoing']),
    copies.map((p) => [p.data, p.originalLength, p.timestampNs, p.direction === 'outgoing']),
  )
})

for (const format of ['pcap', 'pcap-ns'] as FileFormat[]) {
  test(`${format} from Packet views and from a pipeline of OwnedPackets: tshark reads identical frames and times`, async (t) => {
    const dir = tempDir(t)
    const views = join(dir, `views.${format}`)
    let writer: PcapWriter | undefined
    const { copies } = await liveCapture(t, (batch) => {
      writer ??= PcapWriter.open(views, { format, snapLen: 200 })
      for (const p of batch) writer.write(p)
    })
    writer!.close()
    sameAsTshark(t, views, copies, { nanos: format === 'pcap-ns', pcapng: false })

    const piped = join(dir, `piped.${format}`)
    await pipeline(Readable.from(copies), PcapWriter.open(piped, { format, snapLen: 200 }).writable())
    t.deepEqual(readFileSync(piped), readFileSync(views), 'the same file either way')
    const back = await readAll(piped)
    t.deepEqual(
      back.map((p) => [p.data, p.originalLength, p.timestampNs]),
      copies.map((p) => [p.data, p.originalLength, format === 'pcap' ? (p.timestampNs / 1000n) * 1000n : p.timestampNs]),
    )
  })
}

test('netring reads what tcpdump and tshark wrote: pcap µs and ns, pcapng, big-endian pcap', async (t) => {
  const dir = tempDir(t)
  const veth = vethPair(t)
  const [micro, nano] = await Promise.all([tcpdump(t, veth.near, ''), tcpdump(t, veth.near, '', ['--time-stamp-precision=nano'])])
  const traffic = mixedTraffic(veth.nearMac, veth.farMac)
  await veth.send(traffic)
  for (const c of [micro, nano]) t.is((await c.stop(traffic.length)).length, traffic.length)
  const ng = join(dir, 'tshark.pcapng')
  execFileSync('tshark', ['-r', nano.file, '-F', 'pcapng', '-w', ng], { stdio: 'ignore' })
  const big = join(dir, 'big-endian.pcap')
  writeFileSync(big, swapPcap(readFileSync(nano.file)))
  for (const file of [micro.file, nano.file, ng, big]) {
    const frames = tsharkFrames(file)
    t.is(frames.length, traffic.length, file)
    const back = await readAll(file)
    t.deepEqual(
      back.map((p) => [p.data, p.length, p.originalLength, epochOf(p.timestamp)]),
      frames.map((f) => [f.bytes, f.capLen, f.len, f.epoch]),
      file,
    )
  }
  t.deepEqual(
    (await readAll(nano.file)).map((p) => p.data),
    traffic,
  )
})

test('broken files are EINVAL with the offset; a missing file is ENOENT', async (t) => {
  const dir = tempDir(t)
  const good = join(dir, 'good.pcapng')
  const w = PcapWriter.open(good, { interface: 'x' })
  for (let i = 0; i < 3; i++) w.write({ data: Buffer.alloc(100, i), timestamp: { sec: 1, nsec: i }, originalLength: 100, direction: 'host' } as never)
  w.close()
  const bytes = readFileSync(good)
  const variants: [string, Buffer, RegExp][] = [
    ['truncated.pcapng', bytes.subarray(0, bytes.length - 30), /truncated/],
    ['magic.pcap', Buffer.concat([Buffer.from('nope'), bytes.subarray(4)]), /not a pcap/],
    ['giant.pcap', giantPcap(), /larger than any packet/],
  ]
  for (const [name, content, why] of variants) {
    const file = join(dir, name)
    writeFileSync(file, content)
    const e = await t.throwsAsync(readAll(file), { instanceOf: NetringError })
    t.is(e.code, 'EINVAL', name)
    t.regex(e.message, why)
    t.regex(e.message, /byte offset \d+/)
  }
  await t.throwsAsync(readAll(join(dir, 'missing.pcap')), { instanceOf: NetringError, code: 'ENOENT' })
  // A file cut in the middle of a pcap record.
  const pcap = join(dir, 'cut.pcap')
  const pw = PcapWriter.open(pcap, { format: 'pcap' })
  pw.write({ data: Buffer.alloc(100), timestamp: { sec: 1, nsec: 0 }, originalLength: 100, direction: 'host' } as never)
  pw.close()
  truncateSync(pcap, 24 + 16 + 50)
  await t.throwsAsync(readAll(pcap), { instanceOf: NetringError, code: 'EINVAL', message: /offset 40/ })
})

test('a full disk is ENOSPC, never silent loss; options are checked', (t) => {
  const e = t.throws(() => PcapWriter.open('/dev/full', { format: 'pcapng' }), { instanceOf: NetringError })
  t.is(e.code, 'ENOSPC')
  t.is(e.syscall, 'writev')
  t.throws(() => PcapWriter.open('/tmp/x', { format: 'pcapx' as never }), { instanceOf: NetringError, code: 'EINVAL', message: /format/ })
  t.throws(() => PcapWriter.open('/tmp/x', { snapLen: 0 }), { instanceOf: NetringError, code: 'EINVAL' })
  t.throws(() => PcapWriter.open('/nonexistent-dir/x.pcap'), { instanceOf: NetringError, code: 'ENOENT' })
})

test('a killed writer leaves a file readable up to its last flushed write', (t) => {
  const file = join(tempDir(t), 'killed.pcapng')
  const script = `
    const { PcapWriter } = require(${JSON.stringify(process.cwd())})
    const w = PcapWriter.open(${JSON.stringify(file)}, { interface: 'k' })
    for (let i = 0; i < 1000; i++) w.write({ data: Buffer.alloc(60 + (i % 40), i & 255), timestamp: { sec: 10, nsec: i }, originalLength: 60 + (i % 40), direction: 'host' })
    w.flush()
    w.write({ data: Buffer.alloc(60), timestamp: { sec: 11, nsec: 0 }, originalLength: 60, direction: 'host' })
    process.kill(process.pid, 'SIGKILL')`
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 20_000 })
  t.is(r.signal, 'SIGKILL')
  const frames = tsharkFrames(file)
  t.is(frames.length, 1000)
  t.deepEqual(frames[999].bytes, Buffer.alloc(60 + (999 % 40), 999 & 255))
})

/** The same pcap file in the other byte order. */
function swapPcap(le: Buffer): Buffer {
  const out = Buffer.from(le)
  const swap32 = (at: number) => out.writeUInt32BE(le.readUInt32LE(at), at)
  swap32(0)
  out.writeUInt16BE(le.readUInt16LE(4), 4)
  out.writeUInt16BE(le.readUInt16LE(6), 6)
  for (const at of [8, 12, 16, 20]) swap32(at)
  for (let off = 24; off < le.length; ) {
    const len = le.readUInt32LE(off + 8)
    for (const at of [0, 4, 8, 12]) swap32(off + at)
    off += 16 + len
  }
  return out
}

function giantPcap(): Buffer {
  const h = Buffer.alloc(24 + 16)
  h.writeUInt32LE(0xa1b2c3d4, 0)
  h.writeUInt16LE(2, 4)
  h.writeUInt16LE(4, 6)
  h.writeUInt32LE(65535, 16)
  h.writeUInt32LE(1, 20)
  h.writeUInt32LE(0xfffffff0, 24 + 8)
  return h
}

test('stream({ batches: true }) gives owned batches (one copy per block) that pipeline into a file', async (t) => {
  const file = join(tempDir(t), 'owned.pcapng')
  const veth = vethPair(t)
  using cap = Capture.open(veth.near)
  const traffic = mixedTraffic(veth.nearMac, veth.farMac)
  await veth.send(traffic)
  const owned: import('netring').PacketBatch[] = []
  let count = 0
  const signal = AbortSignal.timeout(10_000)
  for await (const b of cap.stream({ batches: true, signal })) {
    owned.push(b)
    if ((count += b.length) >= traffic.length) break
  }
  // Owned: still readable after the ring moved on and the capture closed.
  cap.close()
  t.deepEqual(
    owned.flatMap((b) => [...b].map((p) => Buffer.from(p.data))),
    traffic,
  )
  t.deepEqual(
    owned.flatMap((b) => Array.from({ length: b.length }, (_, i) => Buffer.from(b.bytes.subarray(b.offsetAt(i), b.offsetAt(i) + b.lengthAt(i))))),
    traffic,
  )
  await pipeline(Readable.from(owned), PcapWriter.open(file, { interface: veth.near }).writable())
  t.deepEqual(
    tsharkFrames(file).map((f) => f.bytes),
    traffic,
  )
  owned[0].release()
  t.true(owned[0].released)
  t.throws(() => owned[0].at(0)!.length, { instanceOf: NetringError, code: 'EBADF' })
})

test('stream({ batches: true }) copies 2 blocks ahead by default and leaves the rest in the ring, losing nothing', async (t) => {
  const veth = vethPair(t)
  // A 1 ms retire timeout: each send below lands in blocks of its own.
  using cap = Capture.open(veth.near, { blockTimeoutMs: 1 })
  t.is(cap.stream({ highWaterMark: 5, batches: true }).destroy().readableHighWaterMark, 5)
  t.is(cap.stream().destroy().readableHighWaterMark, 1024)
  const traffic = mixedTraffic(veth.nearMac, veth.farMac)
  const rounds = 5
  for (let i = 0; i < rounds; i++) {
    await veth.send(traffic)
    await new Promise((r) => setTimeout(r, 20))
  }
  const stream = cap.stream({ batches: true, signal: AbortSignal.timeout(20_000) })
  t.is(stream.readableHighWaterMark, 2)
  stream.pause()
  stream.read(0) // starts the copying, reads nothing
  for (let i = 0; i < 500 && stream.readableLength < 2; i++) await new Promise((r) => setTimeout(r, 10))
  t.is(stream.readableLength, 2, 'two owned batches copied ahead')
  await new Promise((r) => setTimeout(r, 100))
  t.is(stream.readableLength, 2, 'and no more while nobody reads: the others wait in the ring')
  const got: Buffer[] = []
  let blocks = 0
  for await (const b of stream) {
    blocks++
    for (const p of b as import('netring').PacketBatch) got.push(Buffer.from(p.data))
    if (got.length >= traffic.length * rounds) break
  }
  t.deepEqual(got, Array.from({ length: rounds }, () => traffic).flat())
  t.true(blocks > 2, `${blocks} blocks: more than were copied ahead`)
})

test('batch.copy() holds every byte of the block up to its last packet, in memory of its own that outlives the batch', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near)
  const traffic = mixedTraffic(veth.nearMac, veth.farMac)
  await veth.send(traffic)
  let count = 0
  const signal = AbortSignal.timeout(10_000)
  const kept: { copy: import('netring').PacketBatch; bytes: Buffer }[] = []
  for await (const b of cap.batches({ signal })) {
    const copy = b.copy()
    const last = b.length - 1
    // The copy is taken without zero-filling first: any byte not copied would show here.
    t.true(copy.bytes.length >= b.offsetAt(last) + b.lengthAt(last))
    t.true(Buffer.from(b.bytes.subarray(0, copy.bytes.length)).equals(copy.bytes), 'byte for byte, padding and headers too')
    t.not(copy.bytes.buffer, b.bytes.buffer)
    kept.push({ copy, bytes: Buffer.from(copy.bytes) })
    if ((count += b.length) >= traffic.length) break
  }
  cap.close()
  // The ring's memory went back to the kernel: the copies are unchanged and still readable.
  for (const { copy, bytes } of kept) t.true(bytes.equals(copy.bytes))
  t.deepEqual(
    kept.flatMap(({ copy }) => [...copy].map((p) => Buffer.from(p.data))),
    traffic,
  )
})

test('writeBatch with maxSize splits batches across files as -C does: each file full to the limit, every packet once, in order', async (t) => {
  const dir = tempDir(t)
  const maxSize = 2000
  const files: string[] = []
  const open = () => {
    files.push(join(dir, `part${files.length}.pcapng`))
    return PcapWriter.open(files.at(-1)!, { interface: 'part' })
  }
  let w = open()
  const writeRange = (batch: import('netring').PacketBatch, start: number, end: number, cap: Capture) => {
    let next = start
    while ((next = w.writeBatch(batch, { start: next, end, maxSize })) < end) {
      w.close(cap.stats())
      w = open()
    }
  }
  // Each batch in two ranges, so that ranges starting and ending inside a batch are exercised.
  const { copies } = await liveCapture(t, (batch, cap) => {
    writeRange(batch, 0, batch.length >> 1, cap)
    writeRange(batch, batch.length >> 1, batch.length, cap)
  })
  w.close()
  t.true(files.length >= 5, `${files.length} files`)
  // Every file but the last holds the limit and at most one record (244 bytes at snap length 200) more.
  for (const f of files.slice(0, -1)) {
    const size = readFileSync(f).length
    t.true(size >= maxSize && size < maxSize + 244 + 52, `${f}: ${size}`)
  }
  const frames = files.flatMap((f) => tsharkFrames(f))
  t.deepEqual(
    frames.map((f) => f.bytes),
    copies.map((p) => p.data),
  )
})

test('writeBatch refuses a range outside the batch: EINVAL naming the option', async (t) => {
  const dir = tempDir(t)
  using w = PcapWriter.open(join(dir, 'range.pcapng'))
  let checked = false
  await liveCapture(t, (batch) => {
    if (checked) return
    checked = true
    for (const range of [{ start: -1 }, { start: 2, end: 1 }, { end: batch.length + 1 }, { start: 0.5 }]) {
      const e = t.throws(() => w.writeBatch(batch, range), { instanceOf: NetringError })
      t.is(e?.code, 'EINVAL')
      t.is(e?.option, 'start')
    }
    const e = t.throws(() => w.writeBatch(batch, { maxSize: Number.NaN }), { instanceOf: NetringError })
    t.is(e?.option, 'maxSize')
    t.is(w.packetsWritten, 0)
  })
})
