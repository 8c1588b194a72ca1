// Node >= 22 aborts the process when Node-API detaches an ArrayBuffer marked with
// markAsUntransferable. A batch so marked is never detached nor handed back to the kernel:
// release() (or whatever would take the block back) closes the capture and throws EPERM; close()
// closes quietly. Run in child processes, under this Node and under Node 24 when it is present
// (.ci/tools, see README), since the abort happens only on newer Node.

import { existsSync } from 'node:fs'

import test from 'ava'

import { lastJson, runNode } from './helpers/child'

const node24 = new URL('../.ci/tools/node_modules/.bin/node', import.meta.url).pathname
const runtimes: [string, string][] = [['this Node', process.execPath]]
if (existsSync(node24)) runtimes.push(['Node 24', node24])

const SCRIPT = (how: string) => `
  const { Capture } = require('netring')
  const { markAsUntransferable } = require('node:worker_threads')
  const dgram = require('node:dgram')
  const result = {}
  ;(async () => {
    const s = dgram.createSocket('udp4')
    await new Promise((r) => s.bind(0, '127.0.0.1', r))
    const cap = Capture.open('lo', { blockTimeoutMs: 1 })
    for (let i = 0; i < 3; i++) await new Promise((r) => s.send('untransferable', s.address().port, '127.0.0.1', r))
    const batch = cap.nextBatchBlocking(5000)
    const data = [...batch][0].data
    markAsUntransferable(batch.bytes.buffer)
    try { ${how}; result.threw = false } catch (e) { result.threw = e.code }
    result.closed = cap.closed
    result.stillReadable = data.length > 0
    cap.close()
    s.close()
  })().then(() => console.log(JSON.stringify(result)), (e) => { console.error(e); process.exit(3) })
`

for (const [name, execPath] of runtimes) {
  for (const how of ['batch.release()', 'cap.nextBatch()', 'cap.close()']) {
    test(`${name}: ${how} on a batch marked untransferable closes the capture, never aborts`, async (t) => {
      const r = await runNode(SCRIPT(how), { execPath })
      t.is(r.signal, null, r.stderr)
      t.false(r.timedOut)
      t.is(r.code, 0, r.stderr)
      // Node >= 22 gives marked ArrayBuffers a detach key; before that they detach like any other.
      const untransferableIsKnown = execPath === node24 || Number(process.versions.node.split('.')[0]) >= 22
      if (!untransferableIsKnown) {
        // Node 20 detaches marked buffers like any other: the batch is simply released.
        t.deepEqual(lastJson(r), { threw: false, closed: how === 'cap.close()', stillReadable: false })
        return
      }
      t.deepEqual(lastJson(r), {
        threw: how === 'cap.close()' ? false : 'EPERM',
        closed: true,
        // The block was not detached: its views stay readable (the kernel no longer writes it).
        stillReadable: true,
      })
    })
  }
}
