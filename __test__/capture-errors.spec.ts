// Every error is a NetringError with a Node-style code, the syscall, the interface or option it
// is about, and a hint.

import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'

import test from 'ava'
import { Capture, NetringError, type CaptureOptions } from 'netring'

import { sh, sleep, vethPair } from './helpers/net'

test('an unknown interface is ENODEV, naming it', (t) => {
  const e = t.throws(() => Capture.open('netring-nope0'), { instanceOf: NetringError, code: 'ENODEV' })!
  t.is(e.interface, 'netring-nope0')
  t.is(e.errno, 19)
  t.truthy(e.syscall)
  t.regex(e.hint!, /ip link/)
  t.regex(e.message, /netring-nope0/)
  for (const bad of ['', 42, undefined]) {
    const notAName = t.throws(() => Capture.open(bad as never), { instanceOf: NetringError, code: 'EINVAL' })!
    t.is(notAName.option, 'interface')
  }
})

test('the binding throws Error objects with typed fields, spelled as in the facade', async (t) => {
  // Straight to the native classes: the fields are properties, the message is plain text, and
  // option names are the options object's (the engine checks blockSize and frameSize itself).
  const { createRequire } = await import('node:module')
  const { native } = createRequire(import.meta.url)('../dist/native.js')
  const fields = (fn: () => unknown) => {
    try {
      fn()
    } catch (e) {
      const { message, code, errno, syscall, option, hint } = e as Record<string, unknown>
      return { isError: e instanceof Error, message, code, errno, syscall, option, hint, iface: (e as { interface?: string }).interface }
    }
    return t.fail('no error')
  }
  const noDevice = fields(() => native.NativeCapture.open('netring-nope1', {}))!
  t.true(noDevice.isError)
  t.like(noDevice, { code: 'ENODEV', errno: 19, iface: 'netring-nope1' })
  t.is(typeof noDevice.syscall, 'string')
  t.regex(noDevice.hint as string, /ip link/)
  t.false((noDevice.message as string).startsWith('{'))
  const badBlock = fields(() => native.NativeCapture.open('lo', { blockSize: 1000 }))!
  t.like(badBlock, { isError: true, code: 'EINVAL', errno: 22, option: 'blockSize' })
  t.regex(badBlock.message as string, /^invalid option blockSize: /)
  const badFrame = fields(() => native.NativeInjector.open('lo', { frameSize: 100 }))!
  t.like(badFrame, { code: 'EINVAL', option: 'frameSize' })
  t.regex(badFrame.message as string, /^invalid option frameSize: /)
})

const badOptions: [CaptureOptions | unknown, string, RegExp][] = [
  [{ blockSize: 1000 }, 'blockSize', /power of two/],
  [{ blockSize: -1 }, 'blockSize', /integer/],
  [{ blockCount: 0 }, 'blockCount', /./],
  [{ frameSize: 100 }, 'frameSize', /./],
  [{ frameSize: 2056, blockSize: 4096 }, 'frameSize', /./],
  [{ blockTimeoutMs: 100_000 }, 'blockTimeoutMs', /./],
  [{ profile: 'fastest' }, 'profile', /high-throughput/],
  [{ promiscuous: 'yes' }, 'promiscuous', /boolean/],
  [{ timestampSource: 'gps' }, 'timestampSource', /software/],
  [{ fanout: { group: 1, mode: 'roundrobin' } }, 'fanout.mode', /hash/],
  [{ fanout: { group: 70000, mode: 'hash' } }, 'fanout.group', /65535/],
  [{ fanout: { mode: 'hash' } }, 'fanout.group', /required/],
  [{ fanout: { group: 1, mode: 'hash', flags: ['fast'] } }, 'fanout.flags[0]', /defrag/],
  [{ filter: 'not a program' }, 'filter', /./],
  [{ filter: [{ code: 6, jt: 0, jf: 0 }] }, 'filter[0].k', /required/],
  [{ filter: [{ code: 0x15, jt: 5, jf: 0, k: 1 }, { code: 6, jt: 0, jf: 0, k: 0 }] }, 'filter', /./],
  [{ blcokSize: 4096 }, 'blcokSize', /unknown option/],
  ['big', 'options', /object/],
]
for (const [options, option, message] of badOptions) {
  test(`bad option ${JSON.stringify(options)} is EINVAL naming ${option}`, (t) => {
    const e = t.throws(() => Capture.open('lo', options as CaptureOptions), { instanceOf: NetringError, code: 'EINVAL' })!
    t.is(e.option, option)
    t.regex(e.message, message)
  })
}

test('without CAP_NET_RAW it is EPERM with a hint about capabilities', async (t) => {
  // Root with an empty capability bounding set has no capabilities after exec.
  const script = `
    const { Capture } = require('netring')
    try { Capture.open('lo') } catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, syscall: e.syscall, hint: e.hint })) }
  `
  const { stdout } = await promisify(execFile)('setpriv', ['--bounding-set=-all', '--inh-caps=-all', process.execPath, '-e', script], {
    cwd: new URL('..', import.meta.url).pathname,
    timeout: 20_000,
  })
  const e = JSON.parse(stdout)
  t.is(e.name, 'NetringError')
  t.is(e.code, 'EPERM')
  t.is(e.syscall, 'socket')
  t.regex(e.hint, /CAP_NET_RAW/)
  t.regex(e.hint, /setcap cap_net_raw,cap_net_admin\+ep/)
})

test('use after close is EBADF; close() is idempotent', (t) => {
  const cap = Capture.open('lo')
  cap.close()
  cap.close()
  t.true(cap.closed)
  t.is(cap.fd, -1)
  for (const call of [() => cap.nextBatch(), () => cap.nextBatchBlocking(10), () => cap.stats(), () => cap.info]) {
    t.throws(call, { instanceOf: NetringError, code: 'EBADF' })
  }
})

test('deleting the interface ends a waiting for-await with an error, not a hang', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near)
  const iteration = (async () => {
    for await (const p of cap) void p
  })()
  await sleep(100)
  sh('ip', ['link', 'del', veth.near])
  const e = await t.throwsAsync(iteration, { instanceOf: NetringError })
  t.true(['ENODEV', 'ENETDOWN'].includes(e!.code), e!.code)
  t.is(e!.interface, veth.near)
  // The error sticks: later calls report it too, and never hang.
  t.throws(() => cap.nextBatchBlocking(), { instanceOf: NetringError, code: e!.code })
})

test('deleting the interface emits error on the EventEmitter', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near)
  const failed = new Promise<Error>((resolve) => cap.once('error', resolve))
  cap.on('packet', () => {})
  await sleep(100)
  sh('ip', ['link', 'del', veth.near])
  const e = (await failed) as NetringError
  t.true(e instanceof NetringError)
  t.true(['ENODEV', 'ENETDOWN'].includes(e.code))
})

test('deleting the interface fails a blocking wait on a worker-style loop', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near)
  // Another process deletes it while this thread is blocked in poll(2).
  const deleter = spawn('sh', ['-c', `sleep 0.3; ip link del ${veth.near}`], { stdio: 'ignore' })
  const started = performance.now()
  const e = t.throws(() => {
    for (const p of cap.packets({ timeoutMs: 10_000 })) void p
  })
  t.true(e instanceof NetringError)
  t.true(performance.now() - started < 9_000, 'the wait ended with the error, not the timeout')
  await new Promise((r) => deleter.once('exit', r))
})
