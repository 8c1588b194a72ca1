// netring's XDP program: attached with a BPF link, shared by the process's sockets on one
// interface, gone with the last socket and with the process (even on SIGKILL), never replacing
// a program someone else attached; queues without a socket still reach the kernel stack; a
// user's own program with a pinned XSKMAP is joined, not replaced.

import { spawn } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'
import { NetringError, XdpSocket } from 'netring'

import { frame, runIn, sendFrames, sh, vethPair } from './helpers/net'
import { attachedProgram, childWith, collectXdp, eventually, multiQueueVeth, XDP_TEST_SRC } from './helpers/xdp'

/** From the namespace, a UDP datagram to `host:port` and its echo back: the host's stack
 * answered. The exit status says whether the echo came (stdout may be cut short at exit). */
function udpRoundTrip(ns: string, host: string, port: number): Promise<string> {
  const script = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b'netring-xdp-pass', ('${host}', ${port}))
sys.exit(0 if s.recvfrom(100)[0] == b'netring-xdp-pass' else 3)
`
  return runIn(ns, ['python3', '-c', script])
}

test('close() detaches the program; meanwhile the host stack still answers through queue 0 (XDP_PASS)', async (t) => {
  const veth = multiQueueVeth(t, 2, 1)
  // Addresses of our own on our own pair: 10.<pid-based>.<n>.1/2.
  const net = `10.${200 + (process.pid % 50)}.${Math.floor(Math.random() * 250)}`
  sh('ip', ['addr', 'add', `${net}.1/30`, 'dev', veth.near])
  sh('ip', ['-n', veth.ns, 'addr', 'add', `${net}.2/30`, 'dev', veth.far])
  const echo = createSocket('udp4')
  t.teardown(() => echo.close())
  echo.on('message', (msg, from) => echo.send(msg, from.port, from.address))
  await new Promise<void>((resolve) => echo.bind(0, `${net}.1`, resolve))
  const port = echo.address().port
  // The far end has one queue, so every frame arrives on queue 0; the socket takes queue 1, so
  // everything (ARP, the datagram) goes on to the kernel stack.
  const xsk = XdpSocket.open(veth.near, { queue: 1, attach: 'driver', mode: 'rx' })
  t.like(xsk.info, { attach: 'driver', queue: 1 })
  t.is(attachedProgram(veth.near), String(xsk.info.programId))
  await t.notThrowsAsync(udpRoundTrip(veth.ns, `${net}.1`, port), 'the echo came back')
  xsk.close()
  t.is(attachedProgram(veth.near), undefined, 'no program after close')
  await t.notThrowsAsync(udpRoundTrip(veth.ns, `${net}.1`, port), 'the echo came back')
})

test('a child holding an XdpSocket killed with SIGKILL leaves no program behind', async (t) => {
  const veth = multiQueueVeth(t, 1)
  const { child, line, exited } = await childWith(`
    const { XdpSocket } = require('netring')
    const xsk = XdpSocket.open(${JSON.stringify(veth.near)}, { mode: 'rx' })
    console.log('ready ' + xsk.info.programId)
    setInterval(() => xsk.nextBatch(), 50)
  `)
  t.is(attachedProgram(veth.near), line, "the child's program is attached")
  child.kill('SIGKILL')
  t.is((await exited).signal, 'SIGKILL')
  t.true(await eventually(() => attachedProgram(veth.near) === undefined), 'the kernel detached it')
})

test('two sockets on two queues of one interface share one program; it goes with the last', async (t) => {
  const veth = multiQueueVeth(t, 2)
  const a = XdpSocket.open(veth.near, { queue: 0, attach: 'driver', mode: 'rx' })
  const b = XdpSocket.open(veth.near, { queue: 1, attach: 'auto', mode: 'rx' })
  t.is(a.info.programId, b.info.programId)
  t.is(b.info.attach, 'driver', "'auto' shares what is attached")
  const clash = t.throws(() => XdpSocket.open(veth.near, { queue: 1, attach: 'skb', mode: 'rx' }), { instanceOf: NetringError, code: 'EBUSY' })
  t.is(clash?.option, 'attach', 'one interface, one attach mode')
  // Frames from the peer land on either queue; together the two sockets see them all.
  const frames = Array.from({ length: 60 }, (_, i) => frame(veth.nearMac, XDP_TEST_SRC, 60 + i, i))
  // The RX rings hold them all until read.
  await sendFrames(veth.ns, veth.far, frames)
  const seen = new Set<number>()
  const deadline = performance.now() + 10_000
  while (seen.size < frames.length && performance.now() < deadline) {
    for (const xsk of [a, b]) {
      const batch = xsk.nextBatchBlocking(20)
      if (!batch) continue
      for (const p of batch) if (p.data.subarray(6, 12).equals(XDP_TEST_SRC)) seen.add(p.data.readUInt32BE(14))
    }
  }
  t.is(seen.size, frames.length, 'every frame reached one of the two sockets')
  a.close()
  t.is(attachedProgram(veth.near), String(b.info.programId), 'still attached while b is open')
  b.close()
  t.is(attachedProgram(veth.near), undefined)
})

test("a program another process attached gives EBUSY and stays attached", async (t) => {
  const veth = multiQueueVeth(t, 1)
  const { child, line, exited } = await childWith(`
    const { XdpSocket } = require('netring')
    const xsk = XdpSocket.open(${JSON.stringify(veth.near)}, { mode: 'rx', attach: 'driver' })
    console.log('ready ' + xsk.info.programId)
    setInterval(() => xsk.nextBatch(), 50)
  `)
  try {
    for (const attach of ['auto', 'driver', 'skb'] as const) {
      const e = t.throws(() => XdpSocket.open(veth.near, { mode: 'rx', attach }), { instanceOf: NetringError, code: 'EBUSY' })
      t.is(e?.interface, veth.near)
      t.regex(e?.hint ?? '', /already has an XDP program that netring did not attach/)
    }
    t.is(attachedProgram(veth.near), line, "the other process's program is untouched")
  } finally {
    child.kill('SIGKILL')
    await exited
  }
})

test("a user's own program: the socket joins its pinned XSKMAP and receives what it redirects", async (t) => {
  const veth = vethPair(t)
  // A private bpffs: pins made here vanish with the mount.
  const dir = mkdtempSync(join(tmpdir(), 'netring-bpffs-'))
  sh('mount', ['-t', 'bpf', 'bpf', dir])
  t.teardown(() => {
    sh('umount', [dir])
    rmSync(dir, { recursive: true, force: true })
  })
  const pin = join(dir, 'user_xsks')
  const user = spawn('python3', [new URL('./fixtures/xsk-program.py', import.meta.url).pathname, veth.near, pin, 'driver'], { stdio: ['pipe', 'pipe', 'pipe'] })
  const exited = new Promise((resolve) => user.once('exit', resolve))
  t.teardown(async () => {
    user.stdin.end()
    await exited
  })
  let err = ''
  user.stderr.on('data', (d) => (err += d))
  await new Promise<void>((resolve, reject) => {
    user.stdout.on('data', (d) => String(d).includes('ready') && resolve())
    user.once('exit', (code) => reject(new Error(`the user's program failed (${code}): ${err}`)))
  })
  const theirs = attachedProgram(veth.near)
  t.truthy(theirs)
  t.throws(() => XdpSocket.open(veth.near, { mode: 'rx' }), { instanceOf: NetringError, code: 'EBUSY' })
  const xsk = XdpSocket.open(veth.near, { mode: 'rx', program: { xskMap: pin } })
  t.is(xsk.info.attach, undefined, 'netring attached nothing')
  t.is(xsk.info.programId, 0)
  const frames = Array.from({ length: 30 }, (_, i) => frame(veth.nearMac, XDP_TEST_SRC, 60 + 10 * i, i))
  await veth.send(frames)
  const got = await collectXdp(xsk, frames.length)
  t.is(got.length, frames.length)
  got.forEach((p, i) => t.true(p.data.equals(frames[i]), `frame ${i} byte-exact`))
  xsk.close()
  t.is(attachedProgram(veth.near), theirs, 'their program stays when the socket closes')
  const notAMap = t.throws(() => XdpSocket.open(veth.near, { mode: 'rx', program: { xskMap: join(dir, 'nothing') } }), { instanceOf: NetringError, code: 'ENOENT' })
  t.is(notAMap?.option, 'program.xskMap')
})
