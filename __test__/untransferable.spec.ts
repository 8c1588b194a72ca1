// markAsUntransferable on lent memory. On Node >= 22 it gives the ArrayBuffer a detach key that
// only Node holds, and two detaches then abort the process: Node-API's, and the one Node's own
// cleanup hook does at exit for every external ArrayBuffer still alive. A marked buffer is never
// detached nor handed back to the kernel: whatever would take it back (release, the next batch,
// send, discard) closes the socket and throws EPERM, and the views stay readable. close()
// closes quietly, except an Injector's: the slot it cannot give back holds back every frame
// queued after it, which then never leaves, so it says so (EPERM). Each case runs in a child that keeps the marked buffer reachable until it exits,
// under this Node and under Node 24 when it is present (.ci/tools, see README).

import test from 'ava'

import { lastJson, node24, runChild, runtimes } from './helpers/child'
import { localVethPair } from './helpers/net'

// Node >= 22 marks with a detach key; Node 20 only refuses postMessage, and detaches as usual.
const marksWithKey = (execPath: string) => execPath === node24 || Number(process.versions.node.split('.')[0]) >= 22

// Each setup defines `view` (a Buffer over lent memory) and `owner` (the socket); `how` is what
// would take the memory back. argv[1], argv[2]: a local veth pair (send on a, receive on b).
const setups: Record<string, string> = {
  'a Capture batch': `
    const s = dgram.createSocket('udp4')
    await new Promise((r) => s.bind(0, '127.0.0.1', r))
    const owner = Capture.open('lo', { blockTimeoutMs: 1 })
    for (let i = 0; i < 3; i++) await new Promise((r) => s.send('untransferable', s.address().port, '127.0.0.1', r))
    s.close()
    const batch = owner.nextBatchBlocking(5000)
    const view = [...batch][0].data`,
  'an Injector slot': `
    const owner = Injector.open(process.argv[1])
    const slot = owner.allocate(60)
    const view = slot.data`,
  'an Injector slot run': `
    const owner = Injector.open(process.argv[1])
    const run = owner.allocateRun(4, 60)
    const view = run.slot(1)`,
  'an XdpSocket batch': `
    const owner = XdpSocket.open(process.argv[2], { mode: 'rx' })
    const tx = Injector.open(process.argv[1])
    const f = Buffer.alloc(60); f.fill(0xff, 0, 6); f.writeUInt16BE(0x88b5, 12)
    let batch = null
    for (let i = 0; i < 50 && !batch; i++) { tx.send(f); tx.drain(1000); batch = owner.nextBatchBlocking(100) }
    tx.close()
    const view = batch.dataAt(0)`,
  'an XdpSocket slot': `
    const owner = XdpSocket.open(process.argv[2], { mode: 'tx' })
    const slot = owner.allocate(60)
    const view = slot.data`,
}

const cases: [string, string][] = [
  ['a Capture batch', 'batch.release()'],
  ['a Capture batch', 'owner.nextBatch()'],
  ['a Capture batch', 'owner.close()'],
  ['an Injector slot', 'slot.send()'],
  ['an Injector slot', 'slot.discard()'],
  ['an Injector slot', 'owner.close()'],
  ['an Injector slot run', 'run.send()'],
  ['an XdpSocket batch', 'batch.release()'],
  ['an XdpSocket batch', 'owner.close()'],
  ['an XdpSocket slot', 'slot.send()'],
  ['an XdpSocket slot', 'owner.close()'],
]

const script = (setup: string, how: string) => `
  const { Capture, Injector, XdpSocket } = require('netring')
  const { markAsUntransferable } = require('node:worker_threads')
  const dgram = require('node:dgram')
  const result = {}
  ;(async () => {
    ${setup}
    let closeEvents = 0
    owner.on('close', () => closeEvents++)
    markAsUntransferable(view.buffer)
    // Reachable until the process exits: Node's exit hook would meet it.
    globalThis.kept = view
    try { ${how}; result.threw = false } catch (e) { result.threw = e.code; result.message = e.message; result.interface = e.interface }
    result.closed = owner.closed
    result.stillReadable = view.length > 0
    // 'close' once, whether the socket closed itself or close() closed it.
    result.closeEventsBefore = closeEvents
    owner.close()
    result.closeEvents = closeEvents
  })().then(() => console.log(JSON.stringify(result)), (e) => { console.error(e); process.exit(3) })
`

for (const [runtime, execPath] of runtimes) {
  for (const copyMode of [false, true]) {
    for (const [what, how] of cases) {
      // Copy mode (NETRING_FORCE_COPY=1, the Electron path) has no AF_XDP zero-copy lending to
      // vary, and its Capture and Injector cases stand for it.
      if (copyMode && what.includes('Xdp')) continue
      const title = `${runtime}${copyMode ? ', copy mode' : ''}: ${what} marked untransferable, then ${how}: never aborts`
      test(title, async (t) => {
        const veth = localVethPair(t)
        const r = await runChild(script(setups[what]!, how), [veth.a, veth.b], {
          execPath,
          env: copyMode ? { NETRING_FORCE_COPY: '1' } : {},
        })
        t.is(r.signal, null, r.stderr)
        t.false(r.timedOut)
        t.is(r.code, 0, r.stderr)
        const closes = how === 'owner.close()'
        const quiet = closes && !what.includes('Injector')
        if (!marksWithKey(execPath)) {
          // Detached like any other buffer: taken back as usual.
          t.like(lastJson(r), { threw: false, closed: closes, stillReadable: false, closeEventsBefore: closes ? 1 : 0, closeEvents: 1 })
          return
        }
        const result = lastJson<{ threw: string | false; message?: string; interface?: string; closed: boolean; stillReadable: boolean }>(r)
        t.like(result, {
          threw: quiet ? false : 'EPERM',
          closed: true,
          // Not detached: its views stay readable (the kernel no longer uses that memory).
          stillReadable: true,
          closeEventsBefore: 1,
          closeEvents: 1,
        })
        if (quiet) return
        t.regex(result.message!, /untransferable/)
        // The error names the interface whose socket closed.
        t.is(result.interface, what.includes('Capture') ? 'lo' : what.includes('Injector') ? veth.a : veth.b)
      })
    }
  }
}
