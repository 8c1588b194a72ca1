// Running out of file descriptors is not sticky: under EMFILE, Capture.open reports EMFILE
// (not "no such device"), the first async wait fails with EMFILE, and once descriptors are
// free again the next wait works. In a child process, which exhausts its own descriptors.

import test from 'ava'

import { lastJson, runNode } from './helpers/child'

test('EMFILE is reported as EMFILE, and a failed start of the wait thread is retried', async (t) => {
  const r = await runNode(`
    const fs = require('node:fs')
    const dgram = require('node:dgram')
    const { Capture } = require('netring')
    const result = {}
    const held = []
    const exhaust = () => { try { for (;;) held.push(fs.openSync('/dev/null', 'r')) } catch (e) { if (e.code !== 'EMFILE') throw e } }
    const free = (n) => { for (let i = 0; i < n; i++) fs.closeSync(held.pop()) }
    const codeOf = async (fn) => { try { await fn(); return 'ok' } catch (e) { return e.code } }
    ;(async () => {
      const s = dgram.createSocket('udp4')
      await new Promise((r) => s.bind(0, '127.0.0.1', r))
      exhaust()
      result.open = await codeOf(() => Capture.open('lo'))
      free(4)
      const cap = Capture.open('lo', { blockTimeoutMs: 1 })
      exhaust()
      result.firstWait = await codeOf(() => cap.readable())
      free(held.length)
      // Traffic for the wait to see, then a wait that must work now.
      const sending = setInterval(() => s.send('fd-shortage', s.address().port, '127.0.0.1'), 5)
      result.secondWait = await codeOf(async () => {
        for await (const p of cap.iterate({ limit: 1, signal: AbortSignal.timeout(10000) })) void p
      })
      clearInterval(sending)
      cap.close()
      s.close()
    })().then(() => console.log(JSON.stringify(result)), (e) => { console.error(e); process.exit(3) })
  `, { maxFds: 256 })
  t.is(r.signal, null, r.stderr)
  t.false(r.timedOut)
  t.is(r.code, 0, r.stderr)
  t.deepEqual(lastJson(r), { open: 'EMFILE', firstWait: 'EMFILE', secondWait: 'ok' })
})
