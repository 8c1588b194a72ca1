// Failures that kill or hang a process are tested in a child: it runs a CommonJS script that
// loads netring, and the test asserts it exited cleanly, within a bound, and what it printed.

import { spawn } from 'node:child_process'

export interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** The last line of stdout read as JSON (the script's result), or null. */
  result: unknown
}

const root = new URL('../..', import.meta.url).pathname

export interface ChildOptions {
  /** Killed (SIGKILL) after this long. */
  timeoutMs?: number
  nodeArgs?: string[]
}

/** Runs `script` in a fresh Node process; `args` are its process.argv.slice(1). */
export function runChild(script: string, args: string[] = [], options: ChildOptions = {}): Promise<ChildResult> {
  return run([...(options.nodeArgs ?? []), '-e', script, '--', ...args], options)
}

/** Runs `__test__/fixtures/<name>`; `args` are its process.argv.slice(2). */
export function runFixture(name: string, args: string[] = [], options: ChildOptions = {}): Promise<ChildResult> {
  return run([...(options.nodeArgs ?? []), new URL(`../fixtures/${name}`, import.meta.url).pathname, ...args], options)
}

function run(nodeArgs: string[], { timeoutMs = 30_000 }: ChildOptions): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgs, {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    // 'close', not 'exit': only then has all of stdout been read.
    child.on('close', (code, signal) => {
      const last = stdout.trim().split('\n').at(-1) ?? ''
      let result: unknown = null
      try {
        result = JSON.parse(last)
      } catch {
        // no result printed: the assertions on code and signal say why
      }
      resolve({ code, signal, stdout, stderr, result })
    })
  })
}

/** A promise that must settle but might hang: 'resolved', or 'hung' after `ms` (the test's
 * assertion then fails instead of the test timing out). */
export function within(p: Promise<unknown>, ms = 5000): Promise<'resolved' | 'hung'> {
  return Promise.race([p.then(() => 'resolved' as const), new Promise<'hung'>((r) => setTimeout(() => r('hung'), ms).unref())])
}
