// The npm peer `cap`, installed and built for the bench only (bench/.peers), measured on the
// same drain and live traffic as netring. Any failure is reported as n/a with its reason.

import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { delimiter, dirname, resolve } from 'node:path'

import { onConsumerCore, sleep, start } from './lib.mjs'

// cap is a node-gyp addon: a build loads only in Node versions with the same ABI, so each ABI
// gets its own install, built against the running Node's own headers (no download).
function install(root) {
  const dir = `${root}bench/.peers/abi${process.versions.modules}`
  if (existsSync(`${dir}/node_modules/cap/build/Release/cap.node`)) return dir
  const missing = ['libpcap-dev', 'g++', 'make'].filter((p) => {
    try {
      execFileSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' }).includes('install ok installed') || (() => { throw 0 })()
      return false
    } catch {
      return true
    }
  })
  if (missing.length) execFileSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  mkdirSync(dir, { recursive: true })
  writeFileSync(`${dir}/package.json`, '{ "private": true }\n')
  execFileSync('npm', ['install', '--no-audit', '--no-fund', 'cap@0.2.1'], { cwd: dir, stdio: 'ignore' })
  // npm 11 holds back install scripts: build the addon explicitly, for this Node.
  const env = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH}` }
  const nodedir = nodeHeaders()
  if (nodedir) env.npm_config_nodedir = nodedir
  execFileSync('npm', ['rebuild', 'cap', '--foreground-scripts'], { cwd: dir, stdio: 'ignore', env })
  execFileSync(process.execPath, ['-e', "require('cap')"], { cwd: dir, stdio: 'ignore' })
  return dir
}

/** Where the running Node's headers are: its install prefix, or (the npm `node` package) beside it. */
function nodeHeaders() {
  const prefix = resolve(dirname(process.execPath), '..')
  return [prefix, `${prefix}/node_modules/node-${process.platform}-${process.arch}`].find((d) => existsSync(`${d}/include/node/node.h`))
}

export async function capPeer({ root, net, sender, N, LIVE_S, RETIRE_MS, RETIRED_AFTER_MS, progress }) {
  let dir
  try {
    progress('peers: installing and building cap (npm) ...')
    dir = install(root)
  } catch (e) {
    return { reason: `cap could not be installed or built here: ${String(e.message).split('\n')[0]}` }
  }
  const script = `${root}bench/peers/cap-consumer.cjs`
  const env = { NODE_PATH: `${dir}/node_modules` }
  const { Capture } = await import('netring')
  const result = {}
  try {
    // Drain: stopped while the ring fills, then timed from its first packet to the last.
    progress('drain: cap (npm)')
    const expectedFile = `/dev/shm/netring-bench-cap-${process.pid}`
    const counter = Capture.open(net.near, { profile: 'high-throughput', blockTimeoutMs: RETIRE_MS })
    const consumer = startWithEnv(env, ...onConsumerCore(process.execPath, [script, 'drain', net.near, expectedFile]))
    await consumer.line(/ready/)
    consumer.child.kill('SIGSTOP')
    const sent = await sender(N)
    await sleep(RETIRED_AFTER_MS)
    const expected = counter.stats().packets
    counter.close()
    writeFileSync(expectedFile, String(expected))
    consumer.child.kill('SIGCONT')
    // line() gives up after 120 s and clears its timer either way (a bare sleep() raced here kept
    // the whole bench alive for up to two minutes after its report).
    const done = await consumer.line(/\{.*\}/, 120_000).catch(() => null)
    consumer.child.kill('SIGKILL')
    rmSync(expectedFile, { force: true })
    if (!done) throw new Error('cap did not finish the drain within 120 s')
    const r = JSON.parse(done[0])
    result.drain = { path: 'cap (npm, libpcap)', packets: r.packets, expected, ms: r.ms, sent: sent.frames }

    progress('live: cap (npm)')
    const before = net.nearStats()
    const live = startWithEnv(env, ...onConsumerCore(process.execPath, [script, 'live', net.near, String(LIVE_S + 0.5)]))
    await live.line(/ready/)
    const liveSent = await sender(1e12, LIVE_S)
    const line = await live.line(/\{.*\}/, 30_000)
    const after = net.nearStats()
    const l = JSON.parse(line[0])
    result.live = {
      path: 'cap (npm, libpcap)',
      sent: liveSent.frames,
      arrived: after.rx.packets - before.rx.packets,
      packets: l.packets,
      pps: l.packets / LIVE_S,
      ringDrops: 'n/a',
      interfaceDrops: after.rx.dropped - before.rx.dropped,
      cpuNsPerPacket: l.cpuNs / Math.max(1, l.packets),
      rssBeforeMiB: null,
      rssAfterMiB: null,
    }
    return result
  } catch (e) {
    return { ...result, reason: `cap failed during the run: ${String(e.message).split('\n')[0]}` }
  }
}

function startWithEnv(env, command, args) {
  const previous = { ...process.env }
  Object.assign(process.env, env)
  try {
    return start(command, args)
  } finally {
    for (const k of Object.keys(env)) if (previous[k] === undefined) delete process.env[k]
  }
}
