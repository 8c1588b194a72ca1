// FanoutPool resources, each counted in a process of its own (plain node, the built package, an
// .mjs handler): threads, descriptors and ring mappings over many open/close cycles, a failed
// open, a worker over its heap limit, and CPU pinning.

import { spawn } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { vethPair } from './helpers/net'

const child = fileURLToPath(new URL('./fixtures/fanout-pool-child.mjs', import.meta.url))

/** Runs the child fixture (optionally under `taskset`), asserts it exits cleanly, returns its JSON. */
function runChild(args: string[], { cpus, timeoutMs = 90_000 }: { cpus?: string; timeoutMs?: number } = {}): Promise<any> {
  const [command, argv] = cpus ? ['taskset', ['-c', cpus, process.execPath, child, ...args]] : [process.execPath, [child, ...args]]
  return new Promise((resolve, reject) => {
    const p = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs })
    let out = ''
    let err = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (err += d))
    p.on('error', reject)
    // 'close', not 'exit': only then has all of the child's output been read.
    p.on('close', (code, signal) => {
      if (code !== 0 || signal) return reject(new Error(`child ${args.join(' ')} ended with ${code ?? signal}: ${err}`))
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!))
      } catch {
        reject(new Error(`child ${args.join(' ')} printed no result: ${JSON.stringify(out)} ${err}`))
      }
    })
  })
}

test('100 open/close cycles leave no thread, descriptor or ring mapping behind', async (t) => {
  const veth = vethPair(t)
  const r = await runChild(['cycles', veth.near, '100'])
  t.deepEqual(r.after, r.before)
  t.true(r.before.ringMappings === 0 && r.before.threads > 0)
})

test('an unknown interface fails the whole open with ENODEV, and no worker is left running', async (t) => {
  const r = await runChild(['unknown'])
  for (const error of [r.first, r.second]) t.like(error, { name: 'NetringError', code: 'ENODEV', interface: 'netring-nope0' })
  t.deepEqual(r.after, r.before)
})

test('workers: 1e9 is refused by name, not a process out of memory', async (t) => {
  const r = await runChild(['too-many'])
  t.like(r, { name: 'NetringError', code: 'EINVAL', option: 'workers' })
})

test("resourceLimits: a handler over its heap limit is an 'error' for its worker; the pool then closes", async (t) => {
  const veth = vethPair(t)
  const r = await runChild(['oom', veth.near])
  t.true(r.closed)
  t.is(r.errors.length, 1)
  t.like(r.errors[0], { index: 1, workerIndex: 1, code: 'ERR_WORKER_OUT_OF_MEMORY' })
})

test('pinCpus pins worker i to CPU i, and says why a worker is not pinned', async (t) => {
  const veth = vethPair(t)
  const cpus = availableParallelism()
  // One worker more than there are CPUs: the last one cannot be pinned.
  const r = await runChild(['pin', veth.near, String(cpus + 1)])
  for (let i = 0; i < cpus; i++) t.like(r.workers[i], { index: i, cpu: i, pinError: null, allowed: String(i) })
  t.like(r.workers[cpus], { cpu: null, allowed: r.main })
  t.like(r.workers[cpus].pinError, { name: 'NetringError', code: 'EINVAL', option: 'pinCpus' })
})

test('pinCpus leaves a worker unpinned where the process may not run (taskset), and says so', async (t) => {
  const veth = vethPair(t)
  // The process may run on the last CPU only: worker 0 asks for CPU 0, which it may not use.
  const last = availableParallelism() - 1
  t.true(last >= 1, 'this test needs two CPUs')
  const r = await runChild(['pin', veth.near, '2'], { cpus: String(last) })
  t.is(r.main, String(last))
  t.like(r.workers[0], { cpu: null, allowed: String(last) })
  t.like(r.workers[0].pinError, { code: 'EINVAL', option: 'pinCpus' })
  t.regex(r.workers[0].pinError.message, /CPU 0 is not one this process may run on/)
  if (last === 1) t.like(r.workers[1], { cpu: 1, pinError: null, allowed: '1' })
})
