// The published packages work for a user without a Rust toolchain or network: installs the
// platform package's and the main package's tarballs into a fresh project with
// `npm install --offline` and no cargo on PATH, runs a short capture on `lo` from ESM and from
// CommonJS, type-checks a TypeScript file with `tsc --noEmit --strict`, runs every `bin` entry's
// installed link, and checks the message a user gets when no binary matches.
// Used by `npm run pack:check` (tarballs it packs) and `npm run prove:workflows` (tarballs the
// release sent to a local registry).
import { execFileSync } from 'node:child_process'
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { binEntries } from './packages.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))

/**
 * `tarballs`: the platform package's and the main package's .tgz; `platform`: the platform
 * package's directory name (linux-x64-gnu); `pkg`: the main package's package.json.
 * `log(text)` prints a step. Throws on the first failure.
 */
export function installCheck({ tarballs, platform, pkg, log = (text) => console.log(`\n== ${text}`) }) {
  const work = mkdtempSync(join(tmpdir(), 'netring-install-'))
  try {
    // A PATH without cargo or rustc, and npm offline: nothing may be built or fetched.
    const env = {
      ...process.env,
      PATH: process.env.PATH.split(delimiter).filter((d) => !/cargo|rustup/.test(d)).join(delimiter),
      npm_config_offline: 'true',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
    }
    let cargoFound = true
    try {
      execFileSync('cargo', ['--version'], { env, stdio: 'ignore' })
    } catch {
      cargoFound = false
    }
    if (cargoFound) throw new Error('cargo is still on PATH')

    log('install the tarballs into a fresh project, offline, without a Rust toolchain')
    const app = join(work, 'app')
    mkdirSync(app)
    writeFileSync(join(app, 'package.json'), '{ "name": "netring-install-check", "private": true, "version": "1.0.0" }\n')
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', ...tarballs], { cwd: app, env, stdio: 'inherit' })

    const capture = (imports) => `${imports}
const dgram = DGRAM
const cap = Capture.open('lo', { blockTimeoutMs: 1 })
const socket = dgram.createSocket('udp4')
const payload = Buffer.from('install-check-' + process.pid)
socket.bind(0, '127.0.0.1', () => socket.send(payload, socket.address().port, '127.0.0.1', () => {
  let seen = 0
  for (const p of cap.packets({ timeoutMs: 3000 })) if (p.data.includes(payload)) { seen++; break }
  cap.close(); socket.close()
  if (seen !== 1) { console.error('no packet captured'); process.exit(1) }
  console.log('captured on lo:', typeof NetringError === 'function' ? 'ok' : 'NetringError missing')
}))
`
    writeFileSync(join(app, 'esm.mjs'), capture("import { Capture, NetringError } from 'netring'\nimport dgramModule from 'node:dgram'").replace('DGRAM', 'dgramModule'))
    writeFileSync(join(app, 'cjs.cjs'), capture("const { Capture, NetringError } = require('netring')").replace('DGRAM', "require('node:dgram')"))
    for (const script of ['esm.mjs', 'cjs.cjs']) {
      log(`run a capture on lo from ${script}`)
      execFileSync(process.execPath, [script], { cwd: app, env, stdio: 'inherit' })
    }

    log('type-check the public API with tsc --noEmit --strict')
    // Node's types come from this checkout (typeRoots): installing @types/node into the app offline
    // would need its registry metadata in the npm cache, which `npm ci` on a clean machine never
    // fetches (it downloads the locked tarballs only).
    const tsc = [
      join(root, 'node_modules/typescript/bin/tsc'),
      ...['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022'],
      ...['--lib', 'es2023,esnext.disposable', '--typeRoots', join(root, 'node_modules/@types'), '--types', 'node'],
    ]
    writeFileSync(
      join(app, 'check.mts'),
      `import { Bridge, Capture, Injector, NetringError, type CaptureOptions, type Packet, type PacketBatch } from 'netring'
const options: CaptureOptions = { profile: 'low-latency', fanout: { group: 7, mode: 'hash', flags: ['defrag'] }, filter: [{ code: 6, jt: 0, jf: 0, k: 65535 }] }
export async function use(): Promise<number> {
  await using cap = Capture.open('lo', options)
  const batch: PacketBatch | null = cap.nextBatch()
  const first: Packet | undefined = batch?.at(0)
  const ns: bigint | undefined = first?.timestampNs
  for await (const p of cap.iterate({ limit: 1, signal: AbortSignal.timeout(10) })) p.data.subarray(0, 14)
  using tx = Injector.open('lo', { frameCount: 64 })
  const sent: boolean = tx.send(Buffer.alloc(60))
  const slot = tx.allocate(60)
  slot?.send()
  const stats = await Bridge.open({ a: 'lo', b: 'lo' }).run((pkt, dir) => (dir === 'a->b' && pkt.length > 0 ? 'forward' : 'drop'), { iterations: 1 })
  try { Capture.open('nope') } catch (e) { if (e instanceof NetringError) return e.errno }
  return Number(ns ?? 0n) + (sent ? 1 : 0) + stats['a->b'].forwarded
}
`,
    )
    execFileSync(process.execPath, [...tsc, 'check.mts'], { cwd: app, env, stdio: 'inherit' })
    writeFileSync(join(app, 'check-cjs.cts'), "import netring = require('netring')\nconst c: netring.Capture = netring.Capture.open('lo')\nc.close()\n")
    execFileSync(process.execPath, [...tsc, 'check-cjs.cts'], { cwd: app, env, stdio: 'inherit' })

    for (const [command] of binEntries(pkg)) {
      log(`the installed command ${command} is executable`)
      accessSync(join(app, 'node_modules/.bin', command), constants.X_OK)
    }

    log('without a matching binary, the error names the platform, arch and libc it looked for')
    rmSync(join(app, 'node_modules', `${pkg.name}-${platform}`), { recursive: true })
    let message = ''
    try {
      execFileSync(process.execPath, ['-e', "require('netring')"], { cwd: app, env, encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] })
    } catch (e) {
      message = e.stderr
    }
    if (!/no native binary for linux\/x64 \(glibc [\d.]+\)/.test(message) || !message.includes(`${pkg.name}-${platform}`)) {
      throw new Error(`unclear error without a binary:\n${message}`)
    }
    console.log('error without a binary names linux/x64, glibc and the package it looked for')
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}
