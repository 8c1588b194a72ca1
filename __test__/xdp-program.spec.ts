// netring's XDP program: attached with a BPF link, shared by the process's sockets on one
// interface, gone with the last socket and with the process (even on SIGKILL), never replacing
// a program someone else attached; queues without a socket still reach the kernel stack; a
// user's own program with a pinned XSKMAP is joined, not replaced; a user's program given by
// descriptor is attached like netring's own, and the caller's descriptors stay the caller's.

import { spawn } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'
import type { ExecutionContext } from 'ava'
import { NetringError, XdpSocket, type XdpOptions } from 'netring'

import { frame, runIn, sendFrames, sh, type VethPair, vethPair } from './helpers/net'
import { attachedProgram, childWith, collectXdp, eventually, mixedFrames, multiQueueVeth, XDP_TEST_SRC } from './helpers/xdp'

// The binding's internal test export (not part of the facade): BPF objects Node cannot make.
const { native } = createRequire(import.meta.url)('../dist/native.js') as { native: typeof import('../index.js') }
type TestProgramOptions = Parameters<typeof native._testMakeXdpProgram>[0]

/** An XDP program of the test's own over fresh maps (see `_testMakeXdpProgram`); its
 * descriptors are closed when the test ends. */
function testProgram(t: ExecutionContext, options: TestProgramOptions = {}) {
  const p = native._testMakeXdpProgram(options)
  // Each descriptor is closed exactly once: tests of this file run concurrently, so a number
  // closed twice could be another test's by then.
  const fds = new Set([p.program, ...p.xskMaps, ...p.arrayMaps, ...(p.link == null ? [] : [p.link])])
  const close = (fd: number) => fds.delete(fd) && closeSync(fd)
  t.teardown(() => fds.forEach(close))
  return { ...p, closeLink: () => close(p.link!) }
}

function isOpen(fd: number): boolean {
  try {
    fstatSync(fd)
    return true
  } catch {
    return false
  }
}

/** Sends mixed test frames from the peer and checks that `xsk` receives them byte-exact, in order. */
async function receivesByteExact(t: ExecutionContext, xsk: XdpSocket, veth: VethPair, count = 40) {
  const frames = mixedFrames(veth.nearMac, count)
  await veth.send(frames)
  const got = await collectXdp(xsk, frames.length)
  t.is(got.length, frames.length, 'every frame arrived')
  t.true(
    got.every((p, i) => p.data.equals(frames[i])),
    'byte-exact, in order',
  )
}

/** Opens an RX socket on `veth.near` with the user's `program`, which netring links: it must be
 * the one attached, frames must arrive byte-exact, and closing must detach it. */
async function linkReceiveClose(t: ExecutionContext, veth: VethPair, program: XdpOptions['program'], programId: number, count = 40) {
  const xsk = XdpSocket.open(veth.near, { mode: 'rx', program })
  t.is(xsk.info.programId, programId, "the caller's program")
  t.truthy(xsk.info.attach, 'netring attached it')
  t.is(attachedProgram(veth.near), String(programId))
  await receivesByteExact(t, xsk, veth, count)
  xsk.close()
  t.is(attachedProgram(veth.near), undefined, 'no program after close')
}

const openError = (t: ExecutionContext, iface: string, program: XdpOptions['program'], code: string) =>
  t.throws(() => XdpSocket.open(iface, { mode: 'rx', program }), { instanceOf: NetringError, code })

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
      // The program is netring's, of another process: the hint must not say netring did not attach it.
      t.regex(e?.hint ?? '', /already has an XDP program that this process did not attach \(another process's, netring's too/)
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

test("program { fd }: netring links the caller's XDP program and joins its XSKMAP; frames arrive byte-exact; the caller's descriptors stay open", async (t) => {
  const veth = vethPair(t)
  const p = testProgram(t, { arrayMaps: 1 })
  await linkReceiveClose(t, veth, { fd: p.program }, p.programId)
  t.true([p.program, ...p.xskMaps, ...p.arrayMaps].every(isOpen), "netring closed none of the caller's descriptors")
  // The same descriptors work again: the map and the program are intact.
  await linkReceiveClose(t, veth, { fd: p.program }, p.programId, 10)
})

test('program { fd }: a child holding it killed with SIGKILL leaves no program behind', async (t) => {
  const veth = multiQueueVeth(t, 1)
  const { child, line, exited } = await childWith(`
    const { XdpSocket } = require('netring')
    const { native } = require('./dist/native.js')
    const p = native._testMakeXdpProgram()
    const xsk = XdpSocket.open(${JSON.stringify(veth.near)}, { mode: 'rx', program: { fd: p.program } })
    console.log('ready ' + xsk.info.programId + ' ' + p.programId)
    setInterval(() => xsk.nextBatch(), 50)
  `)
  const [socketSays, created] = line.split(' ')
  t.is(socketSays, created, "the socket reports the child's own program")
  t.is(attachedProgram(veth.near), created, "the child's program is attached")
  child.kill('SIGKILL')
  t.is((await exited).signal, 'SIGKILL')
  t.true(await eventually(() => attachedProgram(veth.near) === undefined), 'the kernel detached it')
})

test('program { xskMap: fd }: the socket joins the XSKMAP of a program the test attached; netring attaches nothing and leaves it', async (t) => {
  const veth = vethPair(t)
  const p = testProgram(t, { attachTo: veth.near })
  t.is(attachedProgram(veth.near), String(p.programId), "the test's own link")
  openError(t, veth.near, 'builtin', 'EBUSY')
  const xsk = XdpSocket.open(veth.near, { mode: 'rx', program: { xskMap: p.xskMaps[0] } })
  t.is(xsk.info.attach, undefined, 'netring attached nothing')
  t.is(xsk.info.programId, 0)
  await receivesByteExact(t, xsk, veth)
  xsk.close()
  t.is(attachedProgram(veth.near), String(p.programId), 'their program stays when the socket closes')
  t.true(isOpen(p.xskMaps[0]), 'the map descriptor stays open')
  p.closeLink()
  t.true(await eventually(() => attachedProgram(veth.near) === undefined), 'closing the link detaches it')
})

test('program { fd } with no XSKMAP or several is EINVAL asking for xskMap, and attaches nothing; { fd, xskMap } then works', async (t) => {
  const veth = vethPair(t)
  const none = testProgram(t, { xskMaps: 0, arrayMaps: 1 })
  const noMap = openError(t, veth.near, { fd: none.program }, 'EINVAL')
  t.is(noMap?.option, 'program.fd')
  t.regex(noMap?.message ?? '', /uses no XSKMAP/)
  t.regex(noMap?.hint ?? '', /xskMap/)
  const two = testProgram(t, { xskMaps: 2 })
  const several = openError(t, veth.near, { fd: two.program }, 'EINVAL')
  t.is(several?.option, 'program.fd')
  t.regex(several?.message ?? '', /uses 2 XSKMAPs/)
  t.regex(several?.hint ?? '', /program: \{ fd, xskMap/)
  t.is(attachedProgram(veth.near), undefined, 'nothing was attached')
  // The program redirects to its first XSKMAP: joining that one receives.
  await linkReceiveClose(t, veth, { fd: two.program, xskMap: two.xskMaps[0] }, two.programId, 20)
})

test('sockets with one program { fd } on two queues share one link; another program on that interface is EBUSY', async (t) => {
  const veth = multiQueueVeth(t, 2)
  const mine = testProgram(t)
  const other = testProgram(t)
  const a = XdpSocket.open(veth.near, { queue: 0, mode: 'rx', program: { fd: mine.program } })
  for (const program of [{ fd: other.program }, 'builtin'] as const) {
    const e = t.throws(() => XdpSocket.open(veth.near, { queue: 1, mode: 'rx', program }), { instanceOf: NetringError, code: 'EBUSY' })
    t.is(e?.option, 'program')
    t.regex(e?.hint ?? '', /one XDP program/)
  }
  const b = XdpSocket.open(veth.near, { queue: 1, mode: 'rx', program: { fd: mine.program } })
  t.is(b.info.programId, a.info.programId)
  t.is(b.info.attach, a.info.attach)
  a.close()
  t.is(attachedProgram(veth.near), String(mine.programId), 'still attached while b is open')
  b.close()
  t.is(attachedProgram(veth.near), undefined, 'the link went with the last socket')
  // And the other way round: netring's own program first, then a user's.
  const builtin = XdpSocket.open(veth.near, { queue: 0, mode: 'rx' })
  t.is(openError(t, veth.near, { fd: mine.program }, 'EBUSY')?.option, 'program')
  builtin.close()
  t.is(attachedProgram(veth.near), undefined)
})

test('descriptors that are not numbers, not open, or not what the option needs are typed errors naming program.fd / program.xskMap', (t) => {
  const veth = vethPair(t)
  const xdp = testProgram(t, { arrayMaps: 1 })
  const filter = testProgram(t, { xskMaps: 0, socketFilter: true })
  const file = openSync('/proc/self/stat', 'r')
  t.teardown(() => closeSync(file))
  const notOpen = 2 ** 31 - 1
  const cases: [XdpOptions['program'], string, string][] = [
    [{ fd: -1 }, 'EINVAL', 'program.fd'],
    [{ fd: Number.NaN }, 'EINVAL', 'program.fd'],
    [{ fd: 1.5 }, 'EINVAL', 'program.fd'],
    [{ fd: '3' as never }, 'EINVAL', 'program.fd'],
    [{ fd: notOpen + 1 }, 'EINVAL', 'program.fd'],
    [{ xskMap: -1 }, 'EINVAL', 'program.xskMap'],
    [{ xskMap: Number.NaN }, 'EINVAL', 'program.xskMap'],
    [{ xskMap: '' }, 'EINVAL', 'program.xskMap'],
    [{ fd: xdp.program, xskMap: -2 }, 'EINVAL', 'program.xskMap'],
    [{} as never, 'EINVAL', 'program.xskMap'],
    [{ fd: notOpen }, 'EBADF', 'program.fd'],
    [{ fd: file }, 'EINVAL', 'program.fd'],
    [{ fd: filter.program }, 'EINVAL', 'program.fd'],
    [{ fd: xdp.xskMaps[0] }, 'EINVAL', 'program.fd'],
    [{ xskMap: notOpen }, 'EBADF', 'program.xskMap'],
    [{ xskMap: file }, 'EINVAL', 'program.xskMap'],
    [{ xskMap: xdp.program }, 'EINVAL', 'program.xskMap'],
    [{ xskMap: xdp.arrayMaps[0] }, 'EINVAL', 'program.xskMap'],
    [{ fd: xdp.program, xskMap: xdp.arrayMaps[0] }, 'EINVAL', 'program.xskMap'],
  ]
  for (const [program, code, option] of cases) {
    const e = openError(t, veth.near, program, code)
    t.is(e?.option, option, JSON.stringify(program))
    t.truthy(e?.hint ?? /must be a file descriptor|must be a pinned path|is required/.test(e?.message ?? ''), `${JSON.stringify(program)}: a hint or a plain rule`)
  }
  const filterAsProgram = openError(t, veth.near, { fd: filter.program }, 'EINVAL')
  t.regex(filterAsProgram?.message ?? '', /not an XDP program/)
  const fileAsProgram = openError(t, veth.near, { fd: file }, 'EINVAL')
  t.regex(fileAsProgram?.message ?? '', /not a BPF program/)
  t.regex(openError(t, veth.near, { xskMap: xdp.arrayMaps[0] }, 'EINVAL')?.message ?? '', /not an XSKMAP/)
  t.is(attachedProgram(veth.near), undefined, 'nothing was attached')
  t.true([xdp.program, filter.program, file, ...xdp.xskMaps].every(isOpen), 'no descriptor of the caller was closed')
})
