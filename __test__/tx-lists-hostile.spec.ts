// sendFrames() against a hostile list: code that runs while the binding reads the list (getters,
// Proxy traps) closes the socket, sends re-entrantly or takes every TX frame; a Proxy lies about
// its length. Nothing of it may crash, hang, allocate without bound or corrupt the socket's
// accounting. The cases that could crash or hang run in a child process.

import test, { type ExecutionContext } from 'ava'
import { Injector, NetringError, XdpSocket } from 'netring'

import { runNode } from './helpers/child'
import { frame, localVethPair } from './helpers/net'

const OPEN = {
  Injector: `Injector.open(IFACE, { frameCount: 64 })`,
  XdpSocket: `XdpSocket.open(IFACE, { mode: 'tx', frameCount: 64, ringSize: 64 })`,
}

/** A child script with `sock` open on `iface` and `f(seq)` making a 60-byte frame. */
const script = (kind: keyof typeof OPEN, iface: string, body: string) => `
  const { Injector, XdpSocket } = require('netring')
  const IFACE = '${iface}'
  const sock = ${OPEN[kind]}
  const f = (seq) => { const b = Buffer.alloc(60, 0); b.fill(0xff, 0, 6); b.writeUInt16BE(0x88b5, 12); b.writeUInt32BE(seq, 14); return b }
  const outcome = (call) => { try { return call() } catch (e) { return (e.code ?? 'no code') + ' ' + (e.option ?? '') + (e.code ? '' : e.message) } }
  /** An array whose element 1 runs \`hook\` when it is read. */
  const hooked = (hook) => { const a = [f(0), f(1), f(2)]; Object.defineProperty(a, 1, { get() { hook(); return f(1) } }); return a }
  ${body}
`

/** Runs `source` in a child that must exit cleanly within 20 s; its printed result. */
async function inChild(t: ExecutionContext, source: string) {
  const r = await runNode(source, { timeoutMs: 20_000 })
  t.false(r.timedOut, r.stderr)
  t.is(r.signal, null, r.stderr)
  t.is(r.code, 0, r.stderr)
  return r.result as Record<string, unknown>
}

for (const kind of ['Injector', 'XdpSocket'] as const) {
  test(`${kind}.sendFrames: a getter of the list that closes the socket, sends re-entrantly or lends every TX frame is refused (EBUSY), crashes nothing, loses no frame`, async (t) => {
    const veth = localVethPair(t)
    const out = await inChild(t, script(kind, veth.a, `
        const out = {}
        // sendFrames from a getter of the list being read: refused (the socket is busy), the
        // getter's exception ends the outer call, which queues nothing.
        let inner
        out.reenter = outcome(() => sock.sendFrames(hooked(() => { inner = outcome(() => sock.sendFrames([f(10), f(11)])); throw new Error('getter') })))
        out.inner = inner
        // The same caught in the getter: the outer call goes on and sends its three frames.
        out.caught = outcome(() => sock.sendFrames(hooked(() => outcome(() => sock.sendFrames([f(10)])))))
        // close() from a getter: refused as well, the socket stays open and usable.
        out.close = outcome(() => sock.sendFrames(hooked(() => { out.innerClose = outcome(() => sock.close()) })))
        out.closed = sock.closed
        // Every TX frame lent from a getter: refused too, the outer call sends its frames.
        let run
        out.lendAll = outcome(() => sock.sendFrames(hooked(() => { out.lent = outcome(() => (run = sock.allocateRun(64, 60)).count) })))
        if (run) run.discard()
        out.drained = sock.drain(5000)
        const s = sock.stats()
        out.sent = s.sent
        out.pending = s.pending
        sock.close()
        console.log(JSON.stringify(out))
      `))
    t.regex(String(out.inner), /^EBUSY /, 'the re-entrant call is refused')
    t.regex(String(out.reenter), /^no code getter/, "the getter's exception ends the outer call")
    t.is(out.caught, 3, 'the outer call queued its three frames')
    t.regex(String(out.innerClose), /^EBUSY /, 'close() from a getter is refused')
    t.is(out.close, 3)
    t.false(out.closed)
    t.regex(String(out.lent), /^EBUSY /, 'allocateRun() from a getter is refused')
    t.is(out.lendAll, 3)
    t.true(out.drained)
    t.is(out.sent, 9, 'the frames of the three calls that returned 3, sent once')
    t.is(out.pending, 0)
  })

  test(`${kind}.sendFrames: a Proxy lying about its length (2**32, -1, NaN, 1.5, 1e9) is refused at once, allocating nothing for it`, async (t) => {
    const veth = localVethPair(t)
    const out = await inChild(t, script(kind, veth.a, `
        const out = {}
        const one = f(0)
        for (const length of [2 ** 32, 2 ** 32 + 1, -1, NaN, 1.5, 1e9, Infinity, '2', 2 ** 31]) {
          // Every index reads as a good frame: only the length lies.
          const p = new Proxy([one], { get: (target, key) => (key === 'length' ? length : typeof key === 'string' && /^\\d+$/.test(key) ? one : target[key]) })
          out[String(length)] = outcome(() => sock.sendFrames(p))
        }
        out.sparse = outcome(() => sock.sendFrames(new Array(2 ** 32 - 1)))
        out.throwing = outcome(() => sock.sendFrames(new Proxy([one], { get: (o, key) => { if (key === 'length') throw new Error('length trap'); return o[key] } })))
        out.pending = sock.stats().pending
        sock.close()
        console.log(JSON.stringify(out))
      `))
    for (const length of ['4294967296', '4294967297', '-1', 'NaN', '1.5', '1000000000', 'Infinity', '2', '2147483648']) {
      t.regex(String(out[length]), /^EINVAL frames/, `length ${length}`)
    }
    t.is(out.sparse, 'EINVAL frames', 'a real array as long as the lies')
    t.is(out.throwing, 'no code length trap', "a throwing length trap's exception is what the caller sees")
    t.is(out.pending, 0, 'nothing queued')
  })
}

test('sendFrames refuses what is not an array (array-likes, typed arrays, strings, objects with numeric keys) as EINVAL frames', (t) => {
  const veth = localVethPair(t)
  using inj = Injector.open(veth.a, { frameCount: 16 })
  using xsk = XdpSocket.open(veth.a, { mode: 'tx', frameCount: 64, ringSize: 64 })
  const f = frame(veth.bMac, veth.aMac, 60, 0)
  for (const sock of [inj, xsk]) {
    for (const notArray of [{ length: 1, 0: f }, new Uint8Array(60), 'frames', { 0: f }, f, new Set([f])]) {
      const e = t.throws(() => sock.sendFrames(notArray as unknown as Buffer[]))
      t.like(e, { code: 'EINVAL', option: 'frames' })
    }
    t.is(sock.stats().pending, 0)
  }
})

test('Injector.sendFrames with per-frame offload: a Proxy lying about its length allocates no metadata for it', async (t) => {
  const veth = localVethPair(t)
  const result = await inChild(
    t,
    `
    const { Injector } = require('netring')
    const sock = Injector.open('${veth.a}', { frameCount: 16, offload: true })
    const one = Buffer.alloc(60, 0xff)
    const lying = (target, length) => new Proxy(target, { get: (o, key) => (key === 'length' ? length : typeof key === 'string' && /^\\d+$/.test(key) ? o[0] : o[key]) })
    const out = {}
    for (const length of [4e8, 2 ** 32 - 1, 1.5]) {
      try { out[length] = sock.sendFrames(lying([one], length), { offload: lying([{}], length) }) } catch (e) { out[length] = e.code + ' ' + e.option }
    }
    out.pending = sock.stats().pending
    sock.close()
    console.log(JSON.stringify(out))
  `,
  )
  t.deepEqual(result, { '400000000': 'EINVAL frames', '4294967295': 'EINVAL frames', '1.5': 'EINVAL frames', pending: 0 })
})

for (const [kind, open] of [
  ['Injector', (iface: string) => Injector.open(iface, { frameCount: 16 })],
  ['XdpSocket', (iface: string) => XdpSocket.open(iface, { mode: 'tx', frameCount: 32, ringSize: 16 })],
] as const) {
  test(`${kind}: stats() before, inside the 'close' listener and after close() agree with what the sendAsync promises said`, async (t) => {
    const veth = localVethPair(t)
    const sock = open(veth.a)
    const total = 200
    const settled = Array.from({ length: total }, (_, i) =>
      sock.sendAsync(frame(veth.bMac, veth.aMac, 60, i)).then(
        () => 'sent',
        (e: NodeJS.ErrnoException) => e.code,
      ),
    )
    t.is(sock.stats().pending, total, 'every frame waits or is queued')
    const counts = (s: { sent: number; pending: number; withdrawn: number }) => [s.sent, s.pending, s.withdrawn]
    let inClose: number[] = []
    sock.on('close', () => (inClose = counts(sock.stats())))
    sock.close(0)
    const atClose = counts(sock.stats())
    const results = await Promise.all(settled)
    const sent = results.filter((r) => r === 'sent').length
    t.deepEqual(new Set(results.filter((r) => r !== 'sent')), new Set(sent === total ? [] : ['EBADF']))
    t.deepEqual(atClose, [sent, 0, total - sent], 'sent, pending, withdrawn: as the promises said')
    t.deepEqual(inClose, atClose, "the 'close' listener saw the final counts")
    t.deepEqual(counts(sock.stats()), atClose, 'and they stay')
  })
}

for (const kind of ['Injector', 'XdpSocket'] as const) {
  test(`${kind}.sendFrames: frames in resizable and shared ArrayBuffers and views of the sender's own lent run are read safely`, async (t) => {
    const veth = localVethPair(t)
    const out = await inChild(t, script(kind, veth.a, `
      const out = {}
      const rab = new ArrayBuffer(100, { maxByteLength: 200 })
      const tracking = new Uint8Array(rab)
      tracking.set(f(1))
      // Shrunk below a header by the getter of the next element.
      const shrinking = [tracking, f(2)]
      Object.defineProperty(shrinking, 1, { get() { rab.resize(10); return f(2) } })
      out.shrunk = outcome(() => sock.sendFrames(shrinking))
      // Grown by the getter of the element before it.
      rab.resize(100)
      const growing = [f(0), tracking]
      Object.defineProperty(growing, 0, { get() { rab.resize(200); return f(0) } })
      out.grown = outcome(() => sock.sendFrames(growing))
      const shared = new Uint8Array(new SharedArrayBuffer(60))
      shared.set(f(3))
      out.shared = outcome(() => sock.sendFrames([shared]))
      const run = sock.allocateRun(4, 60)
      run.slot(0).set(f(4))
      out.ownRun = outcome(() => sock.sendFrames([run.slot(0), f(5)]))
      out.runStill = outcome(() => (run.send(1, 60), 'sent'))
      out.drained = sock.drain(5000)
      out.sent = sock.stats().sent
      sock.close()
      console.log(JSON.stringify(out))
    `))
    // An Injector takes every frame's bytes once the whole list was read (the frame is 10 bytes
    // by then); an XdpSocket copies each frame before it reads the next (it had 100).
    if (kind === 'Injector') t.regex(String(out.shrunk), /^EINVAL/)
    else t.is(out.shrunk, 2)
    t.is(out.grown, 2)
    t.is(out.shared, 1)
    t.is(out.ownRun, 2)
    t.is(out.runStill, 'sent')
    t.true(out.drained)
    t.is(out.sent, (kind === 'Injector' ? 0 : 2) + 2 + 1 + 2 + 1)
  })
}

test('XdpSocket: a batch whose release() is refused (called from a getter of a list being sent) stays held, and releases later', async (t) => {
  const veth = localVethPair(t)
  const result = await inChild(
    t,
    `
    const { Injector, XdpSocket } = require('netring')
    const f = (seq) => { const b = Buffer.alloc(60, 0); b.fill(0xff, 0, 6); b.writeUInt16BE(0x88b5, 12); b.writeUInt32BE(seq, 14); return b }
    const xsk = XdpSocket.open('${veth.b}', { mode: 'rxtx', frameCount: 64, ringSize: 32 })
    const inj = Injector.open('${veth.a}', { frameCount: 16 })
    inj.sendFrames([f(1), f(2), f(3), f(4)])
    inj.drain(2000)
    const batch = xsk.nextBatchBlocking(5000)
    const view = batch.dataAt(0)
    const out = { length: view.length }
    const list = [f(5), f(6)]
    Object.defineProperty(list, 1, { get() { try { batch.release() } catch (e) { out.refused = e.code } return f(6) } })
    out.sent = xsk.sendFrames(list)
    out.releasedAfterRefusal = batch.released
    out.viewAfterRefusal = view.length
    batch.release()
    out.released = batch.released
    out.viewAfterRelease = view.length
    for (const sock of [xsk, inj]) try { sock.sendFrames([view]) } catch (e) { (out.sendReleased ??= []).push(e.code) }
    xsk.close()
    inj.close()
    console.log(JSON.stringify(out))
  `,
  )
  t.deepEqual(result, {
    length: 60,
    refused: 'EBUSY',
    sent: 2,
    releasedAfterRefusal: false,
    viewAfterRefusal: 60,
    released: true,
    viewAfterRelease: 0,
    sendReleased: ['EINVAL', 'EINVAL'],
  })
})

test('a call back into the socket from a getter of its argument is a NetringError EBUSY with a hint', (t) => {
  const veth = localVethPair(t)
  using inj = Injector.open(veth.a, { frameCount: 16 })
  const f = Buffer.alloc(60, 0xff)
  f.writeUInt16BE(0x88b5, 12)
  const inner: unknown[] = []
  const list = [f, f]
  Object.defineProperty(list, 1, {
    get() {
      // A method, a getter, and a flush whose settling reads the socket again.
      for (const call of [() => inj.flush(), () => inj.fd, () => inj.stats()]) {
        try {
          call()
        } catch (e) {
          inner.push(e)
        }
      }
      return f
    },
  })
  t.is(inj.sendFrames(list), 2, 'the outer call goes on')
  t.is(inner.length, 3)
  for (const e of inner) {
    t.true(e instanceof NetringError)
    t.like(e, { code: 'EBUSY' })
    t.regex((e as NetringError).hint ?? '', /getter, Proxy trap or valueOf/)
  }
})
