// XdpSocket errors: each a NetringError with a Node-style code, the option or interface at
// fault, and a hint.

import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'

import test from 'ava'
import { NetringError, XdpSocket } from 'netring'

import { sh, sleep, vethPair } from './helpers/net'
import { attachedProgram } from './helpers/xdp'

test('an unknown interface is ENODEV with a hint', (t) => {
  const e = t.throws(() => XdpSocket.open('nr-nope-xdp'), { instanceOf: NetringError, code: 'ENODEV' })
  t.is(e?.interface, 'nr-nope-xdp')
  t.regex(e?.hint ?? '', /ip link/)
})

const badOptions: [string, Record<string, unknown>][] = [
  ['frameSize', { frameSize: 3000 }],
  ['frameCount', { frameCount: 3 }],
  ['ringSize', { ringSize: 1000 }],
  ['headroom', { headroom: 1000 }],
  ['batchSize', { batchSize: 0 }],
  ['busyPollUs', { busyPollUs: 2 ** 31 }],
  ['mode', { mode: 'both' }],
  ['attach', { attach: 'native' }],
  ['zeroCopy', { zeroCopy: 'yes' }],
  ['program', { program: 'mine' }],
  ['program.xskMap', { program: { xskMap: '' } }],
  ['queue', { queue: -1 }],
  ['bogus', { bogus: 1 }],
  ['program', { mode: 'tx', program: 'builtin' }],
]
for (const [option, options] of badOptions) {
  test(`a bad ${option} (${JSON.stringify(options)}) is EINVAL naming it`, (t) => {
    const veth = vethPair(t)
    const e = t.throws(() => XdpSocket.open(veth.near, options as never), { instanceOf: NetringError, code: 'EINVAL' })
    t.is(e?.option, option)
    t.is(attachedProgram(veth.near), undefined, 'nothing was attached')
  })
}

test('a queue the interface does not have is EINVAL saying how many it has', (t) => {
  const veth = vethPair(t)
  const e = t.throws(() => XdpSocket.open(veth.near, { queue: 3 }), { instanceOf: NetringError, code: 'EINVAL' })
  t.is(e?.option, 'queue')
  t.regex(e!.message, /has 1 RX queue/)
})

test('forced zero-copy on a veth is EOPNOTSUPP naming zeroCopy; the program does not stay', (t) => {
  const veth = vethPair(t)
  const e = t.throws(() => XdpSocket.open(veth.near, { zeroCopy: true }), { instanceOf: NetringError, code: 'EOPNOTSUPP' })
  t.is(e?.option, 'zeroCopy')
  t.is(e?.syscall, 'bind')
  t.regex(e?.hint ?? '', /zero-copy/)
  t.is(attachedProgram(veth.near), undefined)
  using copy = XdpSocket.open(veth.near, { zeroCopy: false })
  t.false(copy.info.zeroCopy)
})

test('native XDP with an MTU too large is ERANGE with the limit; auto falls back to skb', (t) => {
  const veth = vethPair(t, { mtu: 9000 })
  const e = t.throws(() => XdpSocket.open(veth.near, { attach: 'driver' }), { instanceOf: NetringError, code: 'ERANGE' })
  t.is(e?.interface, veth.near)
  t.regex(e?.hint ?? '', /3520 bytes/)
  using auto = XdpSocket.open(veth.near, { attach: 'auto' })
  t.is(auto.info.attach, 'skb')
})

test('a queue already bound is EBUSY after a short retry; a queue just closed is retried and opens', (t) => {
  const veth = vethPair(t)
  const first = XdpSocket.open(veth.near)
  const e = t.throws(() => XdpSocket.open(veth.near), { instanceOf: NetringError, code: 'EBUSY' })
  t.is(e?.syscall, 'bind')
  first.close()
  // The kernel releases the queue with a delay; open retries through it.
  for (let i = 0; i < 5; i++) XdpSocket.open(veth.near).close()
  t.pass()
})

test('without capabilities it is EPERM with a hint naming CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF', async (t) => {
  const veth = vethPair(t)
  const script = `
    const { XdpSocket } = require('netring')
    try { XdpSocket.open(${JSON.stringify(veth.near)}) } catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, syscall: e.syscall, hint: e.hint })) }
  `
  const { stdout } = await promisify(execFile)('setpriv', ['--bounding-set=-all', '--inh-caps=-all', process.execPath, '-e', script], {
    cwd: new URL('..', import.meta.url).pathname,
    timeout: 20_000,
  })
  const e = JSON.parse(stdout)
  t.like(e, { name: 'NetringError', code: 'EPERM', syscall: 'socket' })
  t.regex(e.hint, /CAP_NET_RAW/)
  t.regex(e.hint, /CAP_BPF/)
})

test('use after close is EBADF; close() is idempotent; a direction the socket lacks is EINVAL', (t) => {
  const veth = vethPair(t)
  const rx = XdpSocket.open(veth.near, { mode: 'rx' })
  t.throws(() => rx.send(Buffer.alloc(60)), { instanceOf: NetringError, code: 'EINVAL' })
  rx.close()
  rx.close()
  t.true(rx.closed)
  t.is(rx.fd, -1)
  for (const call of [() => rx.nextBatch(), () => rx.nextBatchBlocking(10), () => rx.info, () => rx.flush()]) {
    t.throws(call, { instanceOf: NetringError, code: 'EBADF' })
  }
  // The counts outlive the socket: the final ones, nothing pending.
  t.like(rx.stats(), { received: 0, sent: 0, pending: 0, withdrawn: 0, fillRing: 0, rxRing: 0 })
  using tx = XdpSocket.open(veth.near, { mode: 'tx' })
  const e = t.throws(() => tx.nextBatch(), { instanceOf: NetringError, code: 'EINVAL' })
  t.is(e?.option, 'mode')
  t.throws(() => tx.send(Buffer.alloc(4000)), { instanceOf: NetringError, code: 'EMSGSIZE' })
})

test('deleting the interface ends a waiting for-await with ENODEV, not a hang', async (t) => {
  const veth = vethPair(t)
  using xsk = XdpSocket.open(veth.near, { mode: 'rx' })
  const iteration = (async () => {
    for await (const p of xsk) void p
  })()
  await sleep(100)
  sh('ip', ['link', 'del', veth.near])
  const e = await t.throwsAsync(iteration, { instanceOf: NetringError })
  t.true(['ENODEV', 'ENETDOWN', 'ENXIO'].includes(e!.code), e!.code)
  t.is(e!.interface, veth.near)
  t.throws(() => xsk.nextBatchBlocking(), { instanceOf: NetringError, code: e!.code })
})

test('deleting the interface fails a blocking wait too', async (t) => {
  const veth = vethPair(t)
  using xsk = XdpSocket.open(veth.near, { mode: 'rx' })
  const deleter = spawn('sh', ['-c', `sleep 0.3; ip link del ${veth.near}`], { stdio: 'ignore' })
  const started = performance.now()
  const e = t.throws(() => {
    for (const p of xsk.packets({ timeoutMs: 10_000 })) void p
  })
  t.true(e instanceof NetringError)
  t.true(performance.now() - started < 9_000, 'the wait ended with the error, not the timeout')
  await new Promise((r) => deleter.once('exit', r))
})

test('sizes past 32 bits and NaN, negative or non-number timeouts are EINVAL naming the option, never wrapped', (t) => {
  const veth = vethPair(t)
  const xsk = XdpSocket.open(veth.near)
  t.teardown(() => xsk.close())
  const einval = (option: string) => ({ instanceOf: NetringError, code: 'EINVAL', message: new RegExp(option) })
  // 2^32 + 60 once reached the binding as 60: a slot of the wrong length, silently.
  t.throws(() => xsk.allocate(2 ** 32 + 60), einval('length'))
  t.throws(() => xsk.allocate(2 ** 53), einval('length'))
  t.throws(() => xsk.allocateRun(2 ** 32 + 1, 60), einval('count'))
  t.throws(() => xsk.allocateRun(1, 2 ** 32 + 60), einval('length'))
  for (const bad of [NaN, -1, '1', { valueOf: () => 1 }]) {
    const e = t.throws(() => xsk.drain(bad as number), einval('timeoutMs'))
    t.is(e?.option, 'timeoutMs')
  }
  t.true(xsk.drain(Infinity))
})
