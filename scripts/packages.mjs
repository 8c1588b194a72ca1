// What the published packages may and must hold: one place for `npm run pack:check`, the release
// (scripts/release.mjs) and `npm run prove:workflows`.
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Files users need from the main package; anything else in its tarball is a mistake. */
const MAIN_ALLOWED = /^(dist\/(?:[\w.-]+\/)*[\w.-]+\.(?:js|mjs|cjs|d\.ts|d\.mts|d\.cts)|index\.js|index\.d\.ts|README\.md|LICENSE|package\.json)$/
const MAIN_REQUIRED = ['dist/index.js', 'dist/index.mjs', 'dist/index.d.ts', 'dist/index.d.mts', 'index.js', 'index.d.ts', 'README.md', 'LICENSE']
const PLATFORM_EXTRAS = new Set(['package.json', 'README.md', 'LICENSE'])

/** `x86_64-unknown-linux-gnu` → `linux-x64-gnu`, as napi names the npm/ directories and binaries. */
export function targetDir(triple) {
  const [arch, , os, abi] = triple.split('-')
  const cpu = { x86_64: 'x64', aarch64: 'arm64', armv7: 'arm' }[arch] ?? arch
  return `${os}-${cpu}-${abi}`
}

/** The `bin` entries of a package.json as [command, relative path] pairs (none when it has no `bin`). */
export function binEntries(pkg) {
  if (!pkg.bin) return []
  if (typeof pkg.bin === 'string') return [[pkg.name, pkg.bin]]
  return Object.entries(pkg.bin)
}

const normal = (path) => path.replace(/^\.\//, '')

/**
 * The files `npm pack` would put in the package at `dir` ([{ path, mode }]), scripts not run.
 * The tarball's modes are what users get: `npm ci` keeps them as packed.
 */
export function packListing(dir) {
  return JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' }))[0].files
}

/**
 * Problems with the main package at `dir` (package.json and files in place): files users do not
 * need, files they do need but are missing, install scripts, and `bin` entries that are absent,
 * not executable or without a `#!` line.
 */
export function mainPackageProblems(dir) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  const files = packListing(dir)
  const paths = files.map((f) => f.path)
  const problems = []
  const unexpected = paths.filter((p) => !MAIN_ALLOWED.test(p))
  if (unexpected.length) problems.push(`files users do not need: ${unexpected.join(', ')}`)
  for (const needed of MAIN_REQUIRED) if (!paths.includes(needed)) problems.push(`lacks ${needed}`)
  const installScripts = ['preinstall', 'install', 'postinstall', 'prepare'].filter((s) => pkg.scripts?.[s])
  if (installScripts.length) problems.push(`would run ${installScripts.join(', ')} on install (users get binaries, never a build)`)
  for (const [command, path] of binEntries(pkg)) {
    const file = files.find((f) => f.path === normal(path))
    if (!file) problems.push(`bin ${command}: ${path} is not in the package`)
    else if ((file.mode & 0o111) === 0) problems.push(`bin ${command}: ${path} is packed without the executable bit (mode ${file.mode.toString(8)})`)
    else if (!readFileSync(join(dir, path), 'utf8').startsWith('#!')) problems.push(`bin ${command}: ${path} has no #! line`)
  }
  return problems
}

/** Problems with the platform package at `dir`: it must hold its binary (`binary`) and nothing else of substance. */
export function platformPackageProblems(dir, binary) {
  const paths = packListing(dir).map((f) => f.path)
  const problems = []
  if (!paths.includes(binary)) problems.push(`lacks its binary ${binary}`)
  const other = paths.filter((p) => p !== binary && !PLATFORM_EXTRAS.has(p))
  if (other.length) problems.push(`holds more than its binary: ${other.join(', ')}`)
  return problems
}

/**
 * Sets the executable bit on every `bin` entry of the package at `dir` that exists: tsc writes
 * files without it, and GitHub's artifacts drop file modes between jobs. Returns their paths.
 */
export function restoreBinModes(dir) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  const restored = []
  for (const [, path] of binEntries(pkg)) {
    const file = join(dir, path)
    if (!existsSync(file)) continue
    chmodSync(file, statSync(file).mode | 0o111)
    restored.push(normal(path))
  }
  return restored
}

// `node scripts/packages.mjs restore-bin-modes`: the same for the checkout (CI test jobs, after
// downloading dist/).
if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'restore-bin-modes') {
  restoreBinModes(fileURLToPath(new URL('..', import.meta.url)))
}
