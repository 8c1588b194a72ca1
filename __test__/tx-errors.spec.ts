// Transmit error paths: oversize frames, unknown interface, no permission, use after close, a
// down interface, bad options, and a frame the kernel rejects after it was queued.

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

import test from 'ava'
import { Capture, Injector, NetringError } from 'netring'

import { collect, seqOf } from './helpers/collect'
import { frame, localVethPair, sh } from './helpers/net'

test('a frame larger than the slot or the MTU is EMSGSIZE naming both sizes', (t) => {
  const veth = localVethPair(t)
  using tx = Injector.open(veth.a, { frameSize: 1024 })
  t.like(tx.info, { slotCapacity: 1024 - 48, maxFrameLength: 976 })
  const e = t.throws(() => tx.send(Buffer.alloc(1000)), { instanceOf: NetringError, code: 'EMSGSIZE' })!
  t.regex(e.message, /1000 bytes/)
  t.regex(e.message, /976/)
  t.regex(e.message, /MTU 1500/)
  t.is(e.interface, veth.a)

  using big = Injector.open(veth.a, { frameSize: 4096 })
  t.is(big.info.maxFrameLength, 1500 + 14, 'MTU + Ethernet header')
  t.throws(() => big.send(Buffer.alloc(1515)), { code: 'EMSGSIZE', message: /MTU 1500/ })
  t.true(big.send(Buffer.alloc(1514)))
  // An 802.1Q-tagged frame may be 4 bytes longer, as the kernel allows.
  const tagged = Buffer.alloc(1518)
  tagged.writeUInt16BE(0x8100, 12)
  t.true(big.send(tagged))
  t.throws(() => big.send(Buffer.concat([tagged, Buffer.alloc(1)])), { code: 'EMSGSIZE' })
  t.throws(() => big.allocate(2000), { code: 'EMSGSIZE' })
  // A slot allocated for a tagged frame but filled with an untagged one is refused at send.
  const slot = big.allocate(1518)!
  t.throws(() => slot.send(), { code: 'EMSGSIZE' })
  t.true(big.drain(2000))
  t.like(big.stats(), { sent: 2, rejected: 0, pending: 0 })
  t.throws(() => big.send(Buffer.alloc(10)), { code: 'EINVAL', message: /shorter than an Ethernet header/ })
})

test('unknown interface, bad options and use after close', (t) => {
  t.throws(() => Injector.open('netring-nope0'), { instanceOf: NetringError, code: 'ENODEV' })
  for (const [options, option] of [
    [{ frameSize: 100 }, 'frameSize'],
    [{ frameSize: 32 }, 'frameSize'],
    [{ frameCount: 0 }, 'frameCount'],
    [{ qdiscBypass: 1 }, 'qdiscBypass'],
    [{ frameSzie: 2048 }, 'frameSzie'],
  ] as const) {
    const e = t.throws(() => Injector.open('lo', options as never), { instanceOf: NetringError, code: 'EINVAL' })!
    t.is(e.option, option)
  }
  const tx = Injector.open('lo')
  tx.close()
  tx.close()
  t.true(tx.closed)
  for (const call of [() => tx.send(Buffer.alloc(60)), () => tx.flush(), () => tx.allocate(60)]) {
    t.throws(call, { instanceOf: NetringError, code: 'EBADF' })
  }
  // The counts outlive the socket: what close() left unsent is counted, not lost.
  t.deepEqual(tx.stats(), { sent: 0, rejected: 0, withdrawn: 0, pending: 0 })
})

test('without CAP_NET_RAW it is EPERM with the capabilities hint', async (t) => {
  const script = `
    const { Injector } = require('netring')
    try { Injector.open('lo') } catch (e) { console.log(JSON.stringify({ code: e.code, hint: e.hint })) }
  `
  const { stdout } = await promisify(execFile)('setpriv', ['--bounding-set=-all', '--inh-caps=-all', process.execPath, '-e', script], {
    cwd: new URL('..', import.meta.url).pathname,
    timeout: 20_000,
  })
  const e = JSON.parse(stdout)
  t.is(e.code, 'EPERM')
  t.regex(e.hint, /CAP_NET_RAW/)
})

test('flushing on a down interface is ENETDOWN; the frames stay queued and go out once it is up', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using tx = Injector.open(veth.a)
  sh('ip', ['link', 'set', veth.a, 'down'])
  t.true(tx.send(frame(veth.bMac, veth.aMac, 60, 7)))
  const e = t.throws(() => tx.flush(), { instanceOf: NetringError, code: 'ENETDOWN' })!
  t.is(e.syscall, 'sendto')
  t.is(tx.stats().pending, 1)
  sh('ip', ['link', 'set', veth.a, 'up'])
  t.true(tx.drain(2000))
  const got = await collect(rx, 1)
  t.deepEqual(
    got.map((p) => seqOf(p)),
    [7],
  )
})

test('a frame the kernel rejects at flush is counted and emitted, and the ring goes on', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b)
  using tx = Injector.open(veth.a)
  const errors: NetringError[] = []
  tx.on('error', (e) => errors.push(e as NetringError))
  // Valid when queued; the MTU drops before the flush, so the kernel marks it WRONG_FORMAT.
  t.true(tx.send(frame(veth.bMac, veth.aMac, 1000, 1)))
  t.true(tx.send(frame(veth.bMac, veth.aMac, 100, 2)))
  sh('ip', ['link', 'set', veth.a, 'mtu', '500'])
  tx.flush()
  t.is(errors.length, 1)
  t.is(errors[0].code, 'EMSGSIZE')
  t.regex(errors[0].message, /refused/)
  t.is(tx.stats().rejected, 1)
  // The frame behind the rejected one, and new ones, still leave.
  t.true(tx.send(frame(veth.bMac, veth.aMac, 100, 3)))
  t.true(tx.drain(2000))
  const got = await collect(rx, 2)
  t.deepEqual(got.map((p) => seqOf(p)).sort(), [2, 3])
  t.is(tx.stats().sent, 2)
})

test('slots and runs of slots used after close(): empty views, and EBADF to send them', (t) => {
  const veth = localVethPair(t)
  const tx = Injector.open(veth.a)
  const run = tx.allocateRun(4, 60)!
  const slot = tx.allocate(60)!
  tx.close()
  t.is(run.slot(0).length, 0, 'not a TypeError over the detached buffer')
  t.is(slot.data.length, 0)
  t.throws(() => run.send(), { instanceOf: NetringError, code: 'EBADF' })
  t.throws(() => slot.send(), { instanceOf: NetringError, code: 'EBADF' })
})
