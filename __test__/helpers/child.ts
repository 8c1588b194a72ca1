// Failures that kill or hang a process are tested in a child: it runs a script that loads
// netring (CommonJS: `require('netring')` works), is killed with SIGKILL at the deadline, and the
// test asserts it exited cleanly, within the bound, and what it printed.

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'

export interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** The child was still running at the deadline and was killed. */
  timedOut: boolean
  /** The last line of stdout read as JSON (the script's result), or null. */
  result: unknown
}

const root = new URL('../..', import.meta.url).pathname

/** Node 24 beside the Node running the suite (.ci/tools, see README), for cases that differ by runtime. */
export const node24 = new URL('../../.ci/tools/node_modules/.bin/node', import.meta.url).pathname

/** The runtimes a child-process case runs under: this Node, and Node 24 when it is installed. */
export const runtimes: [name: string, execPath: string][] = [['this Node', process.execPath]]
if (existsSync(node24)) runtimes.push(['Node 24', node24])

export interface ChildOptions {
  /** Killed (SIGKILL) after this long. @default 30000 */
  timeoutMs?: number
  /** Arguments for node itself, before the script. */
  nodeArgs?: string[]
  env?: Record<string, string>
  /** Another Node binary (e.g. Node 24 beside the one running the suite). */
  execPath?: string
  /** A lower RLIMIT_NOFILE for the child (through prlimit, util-linux). */
  maxFds?: number
}

/** Runs `script` with `node --expose-gc` in the package directory. */
export function runNode(script: string, options: ChildOptions = {}): Promise<ChildResult> {
  return run(['--expose-gc', ...(options.nodeArgs ?? []), '-e', script], options)
}

/** Runs `script` in a fresh Node process; `args` are its process.argv.slice(1). */
export function runChild(script: string, args: string[] = [], options: ChildOptions = {}): Promise<ChildResult> {
  return run([...(options.nodeArgs ?? []), '-e', script, '--', ...args], options)
}

/** Runs `__test__/fixtures/<name>`; `args` are its process.argv.slice(2). */
export function runFixture(name: string, args: string[] = [], options: ChildOptions = {}): Promise<ChildResult> {
  return run([...(options.nodeArgs ?? []), new URL(`../fixtures/${name}`, import.meta.url).pathname, ...args], options)
}

function run(nodeArgs: string[], options: ChildOptions): Promise<ChildResult> {
  const { timeoutMs = 30_000, env = {}, execPath = process.execPath, maxFds } = options
  const command = maxFds === undefined ? [execPath, ...nodeArgs] : ['prlimit', `--nofile=${maxFds}`, execPath, ...nodeArgs]
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), {
      cwd: root,
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
    // 'close', not 'exit': only then has all of stdout been read.
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const last = stdout.trim().split('\n').at(-1) ?? ''
      let result: unknown = null
      try {
        result = JSON.parse(last)
      } catch {
        // no result printed: the assertions on code and signal say why
      }
      resolve({ code, signal, stdout, stderr, timedOut, result })
    })
  })
}

/** The last line the child printed, parsed as JSON (children report their findings that way). */
export function lastJson<T = unknown>(r: ChildResult): T {
  const lines = r.stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1]!) as T
}

/** A promise that must settle but might hang: 'resolved', or 'hung' after `ms` (the test's
 * assertion then fails instead of the test timing out). */
export function within(p: Promise<unknown>, ms = 5000): Promise<'resolved' | 'hung'> {
  return Promise.race([p.then(() => 'resolved' as const), new Promise<'hung'>((r) => setTimeout(() => r('hung'), ms).unref())])
}
