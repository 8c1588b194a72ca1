// `npm run pack:check`: proves the published packages work without a Rust toolchain or network.
//
// Builds the x64 glibc binary the way the release workflow does (napi-rs cross toolchain, so it
// needs nothing newer than glibc 2.17; checked), packs the platform package (npm/linux-x64-gnu)
// and the main package the way the release does (optionalDependencies pinned to the exact
// version, no `prepare`), checks both hold only what users need (scripts/packages.mjs, shared
// with the release), then installs and uses them offline (scripts/install-check.mjs).

import { execFileSync } from 'node:child_process'
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { installCheck } from './install-check.mjs'
import { mainPackageProblems, platformPackageProblems, targetDir } from './packages.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const platform = 'linux-x64-gnu'
const binary = `${pkg.napi.binaryName}.${platform}.node`
const work = mkdtempSync(join(tmpdir(), 'netring-pack-'))
const step = (text) => console.log(`\n== pack:check: ${text}`)
const sh = (cmd, args, options = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...options })
const fail = (why) => {
  throw new Error(why)
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
  const platformProblems = platformPackageProblems(platformDir, binary)
  if (platformProblems.length) fail(`the platform package ${platformProblems.join('; ')}`)
  const platformTgz = join(work, sh('npm', ['pack', '--silent', '--pack-destination', work], { cwd: platformDir }).trim().split('\n').at(-1))

  step('pack the main package, optionalDependencies pinned as the release does')
  const mainDir = join(work, 'main')
  mkdirSync(mainDir)
  for (const entry of pkg.files) cpSync(join(root, entry), join(mainDir, entry), { recursive: true })
  const published = { ...pkg, optionalDependencies: Object.fromEntries(pkg.napi.targets.map((t) => [`${pkg.name}-${targetDir(t)}`, pkg.version])) }
  // `prepare` builds from source in a clone; users get binaries and must never run it.
  published.scripts = Object.fromEntries(Object.entries(pkg.scripts).filter(([name]) => name !== 'prepare'))
  writeFileSync(join(mainDir, 'package.json'), `${JSON.stringify(published, null, 2)}\n`)
  const mainProblems = mainPackageProblems(mainDir)
  if (mainProblems.length) fail(`the main package: ${mainProblems.join('; ')}`)
  console.log('main package: only what users need, no Rust sources, tests or binaries')
  const mainTgz = join(work, sh('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', work], { cwd: mainDir }).trim().split('\n').at(-1))

  installCheck({ tarballs: [platformTgz, mainTgz], platform, pkg: published, log: step })
  console.log('\npack:check passed')
} catch (e) {
  console.error(`pack:check FAILED: ${e.message}`)
  process.exitCode = 1
} finally {
  rmSync(work, { recursive: true, force: true })
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
