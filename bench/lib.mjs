// Plumbing for the benchmark: processes, the network it runs on, and what it leaves behind.

import { execFileSync, spawn } from 'node:child_process'
import { cpus } from 'node:os'

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

export function sh(command, args, options = {}) {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...options })
}

/** Runs a command to completion; resolves with stdout, rejects with stderr. */
export function run(command, args, { timeoutMs = 120_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('error', reject)
    child.on('exit', (code, signal) => (code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(' ')}: ${code ?? signal}: ${err}`))))
  })
}

/** Starts a long-running process; `line(re)` waits for an output line matching `re`. */
export function start(command, args, { stdin = 'ignore' } = {}) {
  const child = spawn(command, args, { stdio: [stdin, 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  const waiters = []
  const check = () => {
    for (const w of [...waiters]) {
      const m = w.re.exec(out + err)
      if (m) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(m)
      }
    }
  }
  child.stdout.on('data', (d) => ((out += d), check()))
  child.stderr.on('data', (d) => ((err += d), check()))
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, out, err })))
  child.once('exit', () => {
    for (const w of waiters) w.reject(new Error(`${command} exited before printing ${w.re}: ${err}`))
  })
  return {
    child,
    exited,
    output: () => out,
    errors: () => err,
    line: (re, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${command}: no ${re} within ${timeoutMs} ms: ${err}`)), timeoutMs)
        waiters.push({ re, resolve: (m) => (clearTimeout(timer), resolve(m)), reject: (e) => (clearTimeout(timer), reject(e)) })
        check()
      }),
  }
}

/** Core pinning: consumers (this process, native consumers, peers) on core 0, senders on 1. */
export const twoCores = cpus().length >= 2
export const senderCpu = twoCores ? ['taskset', '-c', '1'] : []

/**
 * The bench network: a namespace holding the sender's end of a veth pair, our end here.
 * Removed at exit, on Ctrl-C and on failure. netdev_max_backlog is raised for the run (the
 * sender bursts), and restored.
 */
export function benchNetwork() {
  const id = process.pid.toString(36)
  const ns = `netring-bench-${id}`
  const near = `nb${id}a`
  const far = `nb${id}b`
  const backlog = sh('sysctl', ['-n', 'net.core.netdev_max_backlog']).trim()
  let removed = false
  const remove = () => {
    if (removed) return
    removed = true
    for (const [cmd, args] of [
      ['ip', ['link', 'del', near]],
      ['ip', ['netns', 'del', ns]],
      ['sysctl', ['-qw', `net.core.netdev_max_backlog=${backlog}`]],
    ]) {
      try {
        execFileSync(cmd, args, { stdio: 'ignore' })
      } catch {
        // already gone
      }
    }
  }
  process.on('exit', remove)
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      remove()
      process.stderr.write(`\nbench: interrupted (${signal}), network removed\n`)
      process.exit(130)
    })
  }
  sh('ip', ['netns', 'add', ns])
  sh('ip', ['link', 'add', near, 'numtxqueues', '1', 'numrxqueues', '1', 'type', 'veth', 'peer', 'name', far, 'netns', ns])
  sh('sysctl', ['-qw', `net.ipv6.conf.${near}.disable_ipv6=1`])
  sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${far}.disable_ipv6=1`])
  sh('ip', ['link', 'set', near, 'up'])
  sh('ip', ['-n', ns, 'link', 'set', far, 'up'])
  sh('sysctl', ['-qw', 'net.core.netdev_max_backlog=300000'])
  const nearMac = sh('cat', [`/sys/class/net/${near}/address`]).trim()
  const farStats = () => JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', far]))[0].stats64
  const nearStats = () => JSON.parse(sh('ip', ['-s', '-j', 'link', 'show', near]))[0].stats64
  return { ns, near, far, nearMac, farStats, nearStats, remove }
}

/** [command, args] running `command` on the consumer's core (core 0) where there are two. */
export const onConsumerCore = (command, args) => (twoCores ? ['taskset', ['-c', '0', command, ...args]] : [command, args])
