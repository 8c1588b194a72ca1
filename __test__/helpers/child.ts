// Running a script in a child Node process, for cases where the failure under test is a crash
// (a signal) or a hang: the child dies or is killed at the deadline, the suite reports it.

import { spawn } from 'node:child_process'

export interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** The child was still running at the deadline and was killed. */
  timedOut: boolean
}

/**
 * Runs `script` (CommonJS, `require('netring')` works) with `node --expose-gc` in the package
 * directory, and kills it with SIGKILL after `timeoutMs`; `maxFds` lowers its descriptor limit.
 */
export function runNode(
  script: string,
  options: { env?: Record<string, string>; timeoutMs?: number; execPath?: string; maxFds?: number } = {},
): Promise<ChildResult> {
  const { env = {}, timeoutMs = 30_000, execPath = process.execPath, maxFds } = options
  const args = [execPath, '--expose-gc', '-e', script]
  // prlimit (util-linux) starts the child with a lower RLIMIT_NOFILE.
  if (maxFds !== undefined) args.unshift('prlimit', `--nofile=${maxFds}`)
  return new Promise((resolve, reject) => {
    const child = spawn(args[0]!, args.slice(1), {
      cwd: new URL('..', import.meta.url).pathname + '..',
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.on('data', (d: Buffer) => (stdout += d))
    child.stderr.on('data', (d: Buffer) => (stderr += d))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, timedOut })
    })
  })
}

/** The last line the child printed, parsed as JSON (children report their findings that way). */
export function lastJson<T = unknown>(r: ChildResult): T {
  const lines = r.stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1]!) as T
}
