// The ring as the kernel accepted it: geometry from options and profiles, and the MAP_LOCKED
// fallback when locking is not allowed.

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

import test from 'ava'
import { Capture } from 'netring'

test('info reports the geometry asked for, from a profile or explicit options', (t) => {
  {
    using cap = Capture.open('lo', { profile: 'low-latency' })
    t.like(cap.info, { profile: 'low-latency', blockSize: 256 * 1024, blockCount: 32, requestedBlockCount: 32, blockTimeoutMs: 1 })
  }
  {
    using cap = Capture.open('lo', { profile: 'jumbo', blockCount: 2, blockTimeoutMs: 5 })
    t.like(cap.info, { profile: 'jumbo', blockSize: 4 << 20, blockCount: 2, frameSize: 65536, blockTimeoutMs: 5 })
  }
})

test('without the right to lock memory the ring is mapped unlocked and works', async (t) => {
  // A 64 KiB memlock limit and no CAP_IPC_LOCK: MAP_LOCKED fails, the plain mapping is used.
  const script = `
    const { Capture } = require('netring')
    const dgram = require('node:dgram')
    const cap = Capture.open('lo', { profile: 'low-memory', blockTimeoutMs: 1 })
    const s = dgram.createSocket('udp4')
    s.bind(0, '127.0.0.1', () => s.send('unlocked', s.address().port, '127.0.0.1', () => {
      let seen = 0
      for (const p of cap.packets({ timeoutMs: 2000 })) if (p.data.includes('unlocked')) { seen++; break }
      console.log(JSON.stringify({ locked: cap.info.locked, seen }))
      cap.close(); s.close()
    }))
  `
  const { stdout } = await promisify(execFile)(
    'prlimit',
    ['--memlock=65536', 'setpriv', '--bounding-set=-ipc_lock', process.execPath, '-e', script],
    { cwd: new URL('..', import.meta.url).pathname, timeout: 20_000 },
  )
  t.deepEqual(JSON.parse(stdout), { locked: false, seen: 1 })
  using cap = Capture.open('lo', { profile: 'low-memory' })
  t.true(cap.info.locked, 'as root with CAP_IPC_LOCK the ring is locked')
})
