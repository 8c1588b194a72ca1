// Ring memory handed to asynchronous native APIs: a job on the thread pool may hold a pointer
// into the ring after the batch is released or the capture closed. The process must never
// fault on it (the closed ring's range becomes an inert read-only mapping, never unmapped
// address space), and lent Buffers cover packet bytes only, never a word the kernel reads.
// Crashes are tested in child processes.

import test from 'ava'

import { lastJson, runNode } from './helpers/child'

/** A child that fills a big ring from lo with UDP, then runs `body` with `cap` and `batch`. */
function withFullBatch(body: string): string {
  return `
    const { Capture } = require('netring')
    const dgram = require('node:dgram')
    const zlib = require('node:zlib')
    const result = {}
    ;(async () => {
      const s = dgram.createSocket('udp4')
      await new Promise((r) => s.bind(0, '127.0.0.1', r))
      const port = s.address().port
      const payload = Buffer.alloc(1400, 7)
      const openFull = async () => {
        const cap = Capture.open('lo', { blockSize: 1 << 22, blockCount: 4, blockTimeoutMs: 200 })
        for (let i = 0; i < 400; i++) await new Promise((r) => s.send(payload, port, '127.0.0.1', r))
        const batch = cap.nextBatchBlocking(5000)
        if (!batch) throw new Error('no batch')
        return { cap, batch }
      }
      ${body}
      s.close()
    })().then(() => console.log(JSON.stringify(result)), (e) => { console.error(e); process.exit(3) })
  `
}

test('an async native job reading a batch survives close() and collection of the ring', async (t) => {
  const r = await runNode(
    withFullBatch(`
      let done = 0
      for (let round = 0; round < 6; round++) {
        const { cap, batch } = await openFull()
        // Four jobs fill the thread pool; each reads the whole block while we close.
        const jobs = []
        for (let j = 0; j < 4; j++) jobs.push(new Promise((res) => zlib.deflate(batch.bytes, { level: 9 }, () => res())))
        const first = [...batch][0]
        jobs.push(new Promise((res) => zlib.gzip(first.data, () => res())))
        cap.close()
        globalThis.gc()
        await Promise.all(jobs)
        done++
      }
      result.rounds = done
    `),
  )
  t.is(r.signal, null, r.stderr)
  t.false(r.timedOut)
  t.is(r.code, 0, r.stderr)
  t.deepEqual(lastJson(r), { rounds: 6 })
})
