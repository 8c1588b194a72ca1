// An independent receiver: tcpdump writing a pcap file, and a reader for that file.

import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import type { ExecutionContext } from 'ava'

/**
 * Starts tcpdump on `iface` for `filter` (with `extraArgs`, e.g. a timestamp precision);
 * `stop()` ends it and returns the frames it wrote to `file`.
 */
export async function tcpdump(t: ExecutionContext, iface: string, filter: string, extraArgs: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'netring-pcap-'))
  const file = join(dir, 'capture.pcap')
  const child = spawn('tcpdump', ['-i', iface, '-w', file, '-U', '-B', '32768', '-s', '0', '-n', ...extraArgs, filter], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  t.teardown(async () => {
    child.kill('SIGKILL')
    await exited
    rmSync(dir, { recursive: true, force: true })
  })
  // tcpdump says "listening on ..." once its socket is open.
  await new Promise<void>((resolve, reject) => {
    let err = ''
    const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 30_000)
    child.stderr.on('data', (d) => {
      err += d
      if (err.includes('listening on')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => reject(new Error(`tcpdump exited (${code}): ${err}`)))
  })
  const frames = () => {
    try {
      return readPcap(readFileSync(file))
    } catch {
      return [] // not written yet
    }
  }
  return {
    file,
    /** Waits (up to 5 s) until tcpdump has written `expected` frames, then stops it. */
    async stop(expected = 0): Promise<Buffer[]> {
      for (let waited = 0; frames().length < expected && waited < 5000; waited += 20) {
        await new Promise((r) => setTimeout(r, 20))
      }
      child.kill('SIGINT')
      await exited
      return frames()
    },
  }
}

/** The frames of a classic pcap file (either timestamp resolution, either byte order). */
export function readPcap(file: Buffer): Buffer[] {
  const magic = file.readUInt32LE(0)
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d
  if (!little && file.readUInt32BE(0) !== 0xa1b2c3d4 && file.readUInt32BE(0) !== 0xa1b23c4d) {
    throw new Error(`not a pcap file (magic ${magic.toString(16)})`)
  }
  const u32 = (off: number) => (little ? file.readUInt32LE(off) : file.readUInt32BE(off))
  const frames: Buffer[] = []
  for (let off = 24; off + 16 <= file.length; ) {
    const len = u32(off + 8)
    if (off + 16 + len > file.length) break // a record still being written
    frames.push(file.subarray(off + 16, off + 16 + len))
    off += 16 + len
  }
  return frames
}
