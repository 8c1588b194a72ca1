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
 * directory, and kills it with SIGKILL after `timeoutMs`.
 */
export function runNode(
  script: string,
  options: { env?: Record<string, string>; timeoutMs?: number; execPath?: string } = {},
): Promise<ChildResult> {
  const { env = {}, timeoutMs = 30_000, execPath = process.execPath } = options
  return new Promise((resolve, reject) => {
    const child = spawn(execPath, ['--expose-gc', '-e', script], {
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
