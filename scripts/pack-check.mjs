// `npm run pack:check`: proves the published packages work without a Rust toolchain or network.
//
// Builds the x64 glibc binary the way the release workflow does (napi-rs cross toolchain, so it
// needs nothing newer than glibc 2.17; checked), packs the platform package (npm/linux-x64-gnu) and the main
// package the way the release workflow does (optionalDependencies pinned to the exact version),
// checks the main package holds only what users need, installs both tarballs into a fresh
// project with `npm install --offline` and no cargo on PATH, and there runs a short capture on
// `lo` from ESM and from CommonJS and type-checks a TypeScript file with `tsc --noEmit --strict`.
// It also checks the message a user gets when no binary matches.

import { execFileSync } from 'node:child_process'
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const platform = 'linux-x64-gnu'
const binary = `${pkg.napi.binaryName}.${platform}.node`
const work = mkdtempSync(join(tmpdir(), 'netring-pack-'))
const step = (text) => console.log(`\n== pack:check: ${text}`)
const sh = (cmd, args, options = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...options })
const fail = (why) => {
  console.error(`pack:check FAILED: ${why}`)
  process.exit(1)
}

try {
  step('build the x86_64-unknown-linux-gnu binary as the release does (glibc 2.17 baseline), and the facade')
  crossToolchainLoads()
  execFileSync('npx', ['napi', 'build', '--platform', '--release', '--target', 'x86_64-unknown-linux-gnu', '--use-napi-cross'], { cwd: root, stdio: 'inherit' })
  execFileSync('npm', ['run', '--silent', 'build:ts'], { cwd: root, stdio: 'inherit' })
  execFileSync(process.execPath, [join(root, 'scripts/check-glibc.mjs'), join(root, binary), '2.17'], { stdio: 'inherit' })

  step(`pack the platform package (npm/${platform})`)
  const platformDir = join(work, 'platform')
  cpSync(join(root, 'npm', platform), platformDir, { recursive: true })
  copyFileSync(join(root, binary), join(platformDir, binary))
  const platformTgz = join(work, sh('npm', ['pack', '--silent', '--pack-destination', work], { cwd: platformDir }).trim().split('\n').at(-1))

  step('pack the main package, optionalDependencies pinned as the release does')
  const mainDir = join(work, 'main')
  mkdirSync(mainDir)
  for (const entry of pkg.files) cpSync(join(root, entry), join(mainDir, entry), { recursive: true })
  const published = { ...pkg, optionalDependencies: Object.fromEntries(pkg.napi.targets.map((t) => [`${pkg.name}-${targetDir(t)}`, pkg.version])) }
  // `prepare` builds from source in a clone; users get binaries and must never run it.
  published.scripts = Object.fromEntries(Object.entries(pkg.scripts).filter(([name]) => name !== 'prepare'))
  const installScripts = ['preinstall', 'install', 'postinstall', 'prepare'].filter((s) => published.scripts[s])
  if (installScripts.length) fail(`the published package would run ${installScripts.join(', ')} on install`)
  writeFileSync(join(mainDir, 'package.json'), `${JSON.stringify(published, null, 2)}\n`)
  const listing = JSON.parse(sh('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: mainDir }))[0].files.map((f) => f.path)
  const unexpected = listing.filter((f) => !/^(dist\/[^/]+\.(js|mjs|d\.ts|d\.mts)|index\.js|index\.d\.ts|README\.md|LICENSE|package\.json)$/.test(f))
  if (unexpected.length) fail(`the main package holds files users do not need: ${unexpected.join(', ')}`)
  for (const needed of ['dist/index.js', 'dist/index.mjs', 'dist/index.d.ts', 'dist/index.d.mts', 'index.js', 'index.d.ts', 'README.md', 'LICENSE']) {
    if (!listing.includes(needed)) fail(`the main package lacks ${needed}`)
  }
  console.log(`main package: ${listing.length} files, no Rust sources, tests or binaries`)
  const mainTgz = join(work, sh('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', work], { cwd: mainDir }).trim().split('\n').at(-1))

  // A PATH without cargo or rustc, and npm offline: nothing may be built or fetched.
  const env = {
    ...process.env,
    PATH: process.env.PATH.split(delimiter).filter((d) => !/cargo|rustup/.test(d)).join(delimiter),
    npm_config_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
  }
  try {
    execFileSync('cargo', ['--version'], { env, stdio: 'ignore' })
    fail('cargo is still on PATH')
  } catch (e) {
    if (e.message?.startsWith('pack:check')) throw e
  }

  step('install both tarballs into a fresh project, offline, without a Rust toolchain')
  const app = join(work, 'app')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), '{ "name": "netring-pack-check", "private": true, "version": "1.0.0" }\n')
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', platformTgz, mainTgz], {
    cwd: app,
    env,
    stdio: 'inherit',
  })

  const capture = (imports) => `${imports}
const dgram = DGRAM
const cap = Capture.open('lo', { blockTimeoutMs: 1 })
const socket = dgram.createSocket('udp4')
const payload = Buffer.from('pack-check-' + process.pid)
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
    step(`run a capture on lo from ${script}`)
    execFileSync(process.execPath, [script], { cwd: app, env, stdio: 'inherit' })
  }

  step('type-check the public API with tsc --noEmit --strict')
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
  execFileSync(
    process.execPath,
    [...tsc, 'check.mts'],
    { cwd: app, env, stdio: 'inherit' },
  )
  writeFileSync(join(app, 'check-cjs.cts'), "import netring = require('netring')\nconst c: netring.Capture = netring.Capture.open('lo')\nc.close()\n")
  execFileSync(
    process.execPath,
    [...tsc, 'check-cjs.cts'],
    { cwd: app, env, stdio: 'inherit' },
  )

  step('without a matching binary, the error names the platform, arch and libc it looked for')
  rmSync(join(app, 'node_modules', `${pkg.name}-${platform}`), { recursive: true })
  let message = ''
  try {
    execFileSync(process.execPath, ['-e', "require('netring')"], { cwd: app, env, encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (e) {
    message = e.stderr
  }
  if (!/no native binary for linux\/x64 \(glibc [\d.]+\)/.test(message) || !message.includes(`${pkg.name}-${platform}`)) {
    fail(`unclear error without a binary:\n${message}`)
  }
  console.log('error without a binary names linux/x64, glibc and the package it looked for')
  console.log('\npack:check passed')
} finally {
  rmSync(work, { recursive: true, force: true })
}

/** `x86_64-unknown-linux-gnu` → `linux-x64-gnu`, as napi names the npm/ directories. */
function targetDir(triple) {
  const [arch, , os, abi] = triple.split('-')
  const cpu = { x86_64: 'x64', aarch64: 'arm64', armv7: 'arm' }[arch] ?? arch
  return `${os}-${cpu}-${abi === 'gnueabihf' ? 'gnueabihf' : abi}`
}

/**
 * `--use-napi-cross` unpacks its toolchain with @napi-rs/lzma, whose native package requires
 * Node >= 22.20: under an older Node, `npm ci` skips it (an optional dependency whose engines do
 * not match). Say so plainly instead of napi's "Cannot find native binding".
 */
function crossToolchainLoads() {
  const cli = createRequire(join(root, 'node_modules/@napi-rs/cli/package.json'))
  try {
    createRequire(cli.resolve('@napi-rs/cross-toolchain'))('@napi-rs/lzma')
  } catch (e) {
    fail(
      `the napi-rs cross toolchain cannot load (${e.message.split('\n')[0]}). Its @napi-rs/lzma binary needs Node >= 22.20 ` +
        'at install time: run `npm ci` under Node 22.20+ or 24 (.ci/run does), then pack:check under any Node.',
    )
  }
}
