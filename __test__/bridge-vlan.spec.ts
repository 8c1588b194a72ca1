// 802.1Q-tagged frames through the bridge. The kernel strips the tag of every frame it receives
// into metadata (no VLAN interface needed) and netring writes it back into the frame; with
// offload metadata the header must then still point at the right bytes: csumStart and hdrLen
// 4 bytes further on. Two hosts in one namespace behind two veth pairs, the bridge between their
// near ends: a child process in the namespace sends tagged frames (plain, with a partial
// checksum, GSO) with netring's Injector on one far end and captures them with netring's
// Capture on the other. Each must arrive byte-exact with its tag, and where the sender left the
// checksum to the kernel, the metadata that arrives with it must complete it to the right one.
// (A veth passes checksum-offloaded and GSO frames on as they are: the receiver completes the
// checksum as the kernel would, from the csumStart and csumOffset it was handed.)

import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'
import { Bridge, type BridgeCallback, type PacketOffload } from 'netring'

import { completed, transportOf, withChecksum, withPartialChecksum } from './helpers/checksum'
import { namespace, runIn, tagged, vethPair } from './helpers/net'
import { ipv4Frame, tcp, udp } from './helpers/traffic'

const MAC_A = Buffer.from('020000000b01', 'hex')
const MAC_B = Buffer.from('020000000b02', 'hex')
const PORT = 47_222
const TCI = 0x2064 // priority 1, VLAN 100

interface Sent {
  /** What the sender hands its injector. */
  frame: Buffer
  offload?: Partial<PacketOffload>
  /** What must arrive (the checksum filled in). */
  expected: Buffer
}

/** A tagged IPv4 TCP or UDP frame of `size` bytes carrying `seq`, sent as `how`. */
function vlanFrame(proto: 'tcp' | 'udp', size: number, seq: number, how: 'plain' | 'partial' | 'gso'): Sent {
  const headers = 18 + 20 + (proto === 'tcp' ? 20 : 8)
  const payload = Buffer.alloc(size - headers)
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 13 + seq) & 0xff
  payload.writeUInt32BE(seq, 0)
  const l4 = proto === 'tcp' ? tcp(PORT, 9, 0x18, payload) : udp(PORT, 9, payload)
  const f = tagged(ipv4Frame(MAC_B, MAC_A, '10.78.0.1', '10.78.0.2', proto === 'tcp' ? 6 : 17, l4), TCI)
  const expected = withChecksum(f)
  if (how === 'plain') return { frame: expected, expected }
  const { l4: csumStart, field } = transportOf(f)
  const csum = { needsCsum: true, csumStart, csumOffset: field - csumStart }
  const gso = how === 'gso' ? { gsoType: 'tcpv4' as const, gsoSize: 1000, hdrLen: headers } : {}
  return { frame: withPartialChecksum(f), offload: { ...csum, ...gso }, expected }
}

/** Plain and partial-checksum frames from the smallest to the largest the MTU takes (1518 tagged), TCP and UDP, and GSO frames through a TX slot and through the second socket. */
function vlanTraffic(): Sent[] {
  const frames: Sent[] = []
  let seq = 0
  for (const proto of ['udp', 'tcp'] as const) {
    for (const size of [66, 100, 577, 1000, 1517, 1518]) {
      for (const how of ['plain', 'partial'] as const) frames.push(vlanFrame(proto, size, seq++, how))
    }
  }
  for (const size of [1900, 4000, 30_000]) frames.push(vlanFrame('tcp', size, seq++, 'gso'))
  return frames
}

// Runs in the hosts' namespace: captures on one far end, sends on the other, prints what arrived.
const HOSTS = `
const { readFileSync } = require('node:fs')
const { Capture, Injector } = require('netring')
const [txIf, rxIf, file, port] = process.argv.slice(1)
const frames = JSON.parse(readFileSync(file, 'utf8'))
const rx = Capture.open(rxIf, { offloadInfo: true, profile: 'low-latency' })
const tx = Injector.open(txIf, { offload: true })
const ours = (f) => f.length > 40 && f.readUInt16BE(12) === 0x8100 && f.readUInt16BE(38) === Number(port)
;(async () => {
  const sent = Promise.all(frames.map((f) => tx.sendAsync(Buffer.from(f.hex, 'hex'), f.offload && { offload: f.offload })))
  const got = []
  const deadline = Date.now() + 20000
  while (got.length < frames.length && Date.now() < deadline) {
    const batch = rx.nextBatch()
    if (!batch) { await new Promise((r) => setTimeout(r, 2)); continue }
    for (const p of batch) if (ours(p.data)) got.push({ hex: p.data.toString('hex'), offload: p.offload, vlanReinserted: p.vlanReinserted })
    batch.release()
  }
  await sent
  tx.close()
  rx.close()
  console.log(JSON.stringify(got))
})()
`

interface Arrived {
  hex: string
  offload: PacketOffload
  vlanReinserted: boolean
}

/** Sends `frames` from one host to the other through a bridge running `fn`; returns what arrived and the bridge's stats. */
async function throughBridge(t: ExecutionContext, frames: Sent[], fn: BridgeCallback = () => 'forward') {
  const ns = namespace(t)
  const left = vethPair(t, { ns })
  const right = vethPair(t, { ns })
  const file = join(tmpdir(), `netring-vlan-${process.pid}-${left.near}.json`)
  writeFileSync(file, JSON.stringify(frames.map((f) => ({ hex: f.frame.toString('hex'), offload: f.offload }))))
  await using bridge = Bridge.open({ a: left.near, b: right.near })
  const controller = new AbortController()
  const running = bridge.run(fn, { signal: controller.signal })
  let out: string
  try {
    out = await runIn(ns, [process.execPath, '-e', HOSTS, '--', left.far, right.far, file, String(PORT)], 60_000)
  } finally {
    controller.abort()
  }
  const stats = await running
  return { arrived: JSON.parse(out.trim().split('\n').at(-1)!) as Arrived[], stats }
}

/** The bytes as a receiver that completes partial checksums sees them. */
const finished = (a: Arrived) => {
  const f = Buffer.from(a.hex, 'hex')
  return a.offload.needsCsum ? completed(f, a.offload) : f
}

test('tagged frames (plain, partial checksum, GSO; TCP and UDP; up to the MTU) cross the bridge byte-exact, tag in place, checksums completable', async (t) => {
  const frames = vlanTraffic()
  const { arrived, stats } = await throughBridge(t, frames)
  t.is(arrived.length, frames.length, 'every frame arrived')
  arrived.forEach((a, i) => {
    const sent = frames[i]!
    t.true(a.vlanReinserted, `frame ${i}: the tag was stripped on the way and written back`)
    t.is(finished(a).toString('hex'), sent.expected.toString('hex'), `frame ${i} (${sent.frame.length} bytes, ${JSON.stringify(sent.offload ?? 'plain')})`)
    if (sent.offload?.gsoType) {
      t.like(a.offload, { gsoType: 'tcpv4', gsoSize: 1000, csumStart: 38, csumOffset: 16 }, `frame ${i}: GSO metadata with the tag counted`)
      t.true(a.offload.hdrLen >= 58, `frame ${i}: hdrLen covers the tagged headers`)
    }
  })
  t.like(stats['a->b'], { forwarded: frames.length, droppedRejected: 0, droppedTooLarge: 0, droppedRingFull: 0 })
})

test('a callback that rewrites tagged frames: they arrive rewritten, tag in place, checksums redone', async (t) => {
  const frames = vlanTraffic()
  const rewrite = (f: Buffer) => {
    const c = Buffer.from(f)
    const { l4, proto } = transportOf(c)
    // A payload byte after the sequence number.
    const at = l4 + (proto === 6 ? 20 : 8) + 4
    c[at] = ~c[at]! & 0xff
    return c
  }
  let rewritten = 0
  const { arrived, stats } = await throughBridge(t, frames, (p, d) => {
    if (d !== 'a->b' || p.data.readUInt16BE(12) !== 0x8100) return 'forward'
    rewritten++
    return rewrite(p.data)
  })
  t.is(rewritten, frames.length)
  t.is(arrived.length, frames.length, 'every frame arrived')
  arrived.forEach((a, i) => {
    const expected = withChecksum(rewrite(frames[i]!.expected))
    t.is(finished(a).toString('hex'), expected.toString('hex'), `frame ${i} (${frames[i]!.frame.length} bytes)`)
  })
  t.like(stats['a->b'], { forwarded: frames.length, droppedRejected: 0 })
})
