// Numbers from JavaScript never crash the process: Infinity means "no limit" where a limit is
// optional, NaN / negatives / non-numbers are EINVAL naming the option, and no number reaches
// a native conversion that could panic. Each case runs in a child process: before the fix the
// process died of SIGABRT (a Rust panic crossing into Node).

import test from 'ava'

import { lastJson, runNode } from './helpers/child'
import { localVethPair } from './helpers/net'

/** Runs `body` (which sets `result`) in a child and checks that it exited cleanly. */
async function inChild(t: import('ava').ExecutionContext, body: string): Promise<Record<string, unknown>> {
  const r = await runNode(`
    const { Capture, Injector, NetringError } = require('netring')
    const result = {}
    const codeOf = (fn) => { try { fn(); return 'ok' } catch (e) { return (e instanceof NetringError ? 'NetringError:' : 'Error:') + e.code + ':' + (e.option ?? '') } }
    ;(async () => { ${body} })().then(() => console.log(JSON.stringify(result)), (e) => { console.error(e); process.exit(3) })
  `)
  t.is(r.signal, null, r.stderr)
  t.false(r.timedOut, 'the child hung')
  t.is(r.code, 0, r.stderr)
  return lastJson(r)
}

test('Infinity and huge timeouts mean no limit; waits still end when data comes', async (t) => {
  const result = await inChild(
    t,
    `
    const cap = Capture.open('lo', { blockTimeoutMs: 1 })
    const dgram = require('node:dgram')
    const s = dgram.createSocket('udp4')
    await new Promise((r) => s.bind(0, '127.0.0.1', r))
    // A few datagrams on lo before each unlimited wait, so it has something to return.
    for (let i = 0; i < 5; i++) await new Promise((r) => s.send('x', s.address().port, '127.0.0.1', r))
    result.infinity = cap.nextBatchBlocking(Infinity) !== null
    for (let i = 0; i < 5; i++) await new Promise((r) => s.send('x', s.address().port, '127.0.0.1', r))
    result.huge = cap.nextBatchBlocking(1e300) !== null
    for (let i = 0; i < 5; i++) await new Promise((r) => s.send('x', s.address().port, '127.0.0.1', r))
    const it = cap.packets({ timeoutMs: 1e300, limit: 1 })
    result.packets = [...it].length
    for (let i = 0; i < 5; i++) await new Promise((r) => s.send('x', s.address().port, '127.0.0.1', r))
    result.maxValue = cap.nextBatchBlocking(Number.MAX_VALUE) !== null
    s.close()
    cap.close()
    `,
  )
  t.deepEqual(result, { infinity: true, huge: true, packets: 1, maxValue: true })
})

test('NaN, negative and non-number timeouts are EINVAL naming the option', async (t) => {
  const result = await inChild(
    t,
    `
    const cap = Capture.open('lo')
    result.nan = codeOf(() => cap.nextBatchBlocking(NaN))
    result.negative = codeOf(() => cap.nextBatchBlocking(-1))
    result.string = codeOf(() => cap.nextBatchBlocking('10'))
    result.packetsNaN = codeOf(() => cap.packets({ timeoutMs: NaN }))
    result.packetsNegInf = codeOf(() => cap.packets({ timeoutMs: -Infinity }))
    result.limitNaN = codeOf(() => cap.packets({ limit: NaN }))
    result.limitFraction = codeOf(() => cap.iterate({ limit: 1.5 }))
    result.blockSizeInf = codeOf(() => Capture.open('lo', { blockSize: Infinity }))
    result.zero = codeOf(() => cap.nextBatchBlocking(0))
    cap.close()
    const tx = Injector.open('lo')
    result.drainNaN = codeOf(() => tx.drain(NaN))
    result.closeNegative = codeOf(() => tx.close(-5))
    tx.close()
    `,
  )
  const einval = (option: string) => `NetringError:EINVAL:${option}`
  t.deepEqual(result, {
    nan: einval('timeoutMs'),
    negative: einval('timeoutMs'),
    string: einval('timeoutMs'),
    packetsNaN: einval('packets.timeoutMs'),
    packetsNegInf: einval('packets.timeoutMs'),
    limitNaN: einval('packets.limit'),
    limitFraction: einval('iterate.limit'),
    blockSizeInf: einval('blockSize'),
    zero: 'ok',
    drainNaN: einval('timeoutMs'),
    closeNegative: einval('drainTimeoutMs'),
  })
})

test('drain(Infinity) and close(Infinity) on an injector return once the ring is empty', async (t) => {
  const result = await inChild(
    t,
    `
    const tx = Injector.open('lo')
    const f = Buffer.alloc(60)
    f.writeUInt16BE(0x88b5, 12)
    for (let i = 0; i < 10; i++) tx.send(f)
    result.drained = tx.drain(Infinity)
    for (let i = 0; i < 10; i++) tx.send(f)
    tx.close(Infinity)
    result.closed = tx.closed
    `,
  )
  t.deepEqual(result, { drained: true, closed: true })
})

test('close(drainTimeoutMs) of an Injector and an XdpSocket: NaN, negatives and non-numbers are EINVAL naming drainTimeoutMs; Infinity waits until sent', async (t) => {
  const veth = localVethPair(t)
  const result = await inChild(
    t,
    `
    const { XdpSocket } = require('netring')
    const f = Buffer.alloc(60)
    f.writeUInt16BE(0x88b5, 12)
    const senders = {
      injector: () => Injector.open('${veth.a}'),
      xdp: () => XdpSocket.open('${veth.a}', { mode: 'tx', program: 'none' }),
    }
    for (const [name, open] of Object.entries(senders)) {
      const cap = Capture.open('${veth.b}', { blockTimeoutMs: 1 })
      const tx = open()
      for (const [label, v] of Object.entries({ nan: NaN, negative: -1, minusInfinity: -Infinity, string: '10', null: null })) {
        result[name + '.' + label] = codeOf(() => tx.close(v))
      }
      result[name + '.openAfterRefusals'] = !tx.closed
      let queued = 0
      for (let i = 0; i < 10; i++) if (tx.send(f)) queued++
      result[name + '.queued'] = queued
      tx.close(Infinity)
      result[name + '.closed'] = tx.closed
      // close(Infinity) returned: what it drained arrived at the peer.
      let arrived = 0
      for (const until = Date.now() + 5000; arrived < queued && Date.now() < until; ) {
        const batch = cap.nextBatchBlocking(100)
        for (const p of batch ?? []) if (p.data.readUInt16BE(12) === 0x88b5) arrived++
      }
      result[name + '.arrived'] = arrived
      cap.close()
    }
    `,
  )
  const einval = 'NetringError:EINVAL:drainTimeoutMs'
  for (const name of ['injector', 'xdp']) {
    t.like(result, {
      [`${name}.nan`]: einval,
      [`${name}.negative`]: einval,
      [`${name}.minusInfinity`]: einval,
      [`${name}.string`]: einval,
      [`${name}.null`]: einval,
      [`${name}.openAfterRefusals`]: true,
      [`${name}.queued`]: 10,
      [`${name}.closed`]: true,
      [`${name}.arrived`]: 10,
    })
  }
})

test('the binding itself takes any number: the facade is not the only guard', async (t) => {
  // Straight to the native class, past the facade's checks: the conversion is total.
  const result = await inChild(
    t,
    `
    const { native } = require('./dist/native.js')
    const cap = native.NativeCapture.open('lo', {})
    for (const v of [NaN, -Infinity, -1, 0]) cap.nextBatchBlocking(v)
    result.waited = true
    const tx = native.NativeInjector.open('lo', {})
    for (const v of [NaN, -Infinity, 1e300, Infinity]) tx.drain(v)
    result.drained = true
    cap.close(); tx.close()
    `,
  )
  t.deepEqual(result, { waited: true, drained: true })
})
