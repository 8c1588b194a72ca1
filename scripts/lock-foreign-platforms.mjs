// Adds lockfile records for the other-platform optional packages of napi-rs tools
// (@napi-rs/lzma-darwin-x64, ...). The registry this project is built against serves only the
// packages of the platforms we build on, so `npm install` cannot record the others, and without
// their records `npm ci` refuses the lockfile ("Missing: ... from lock file"). Each record carries
// the os/cpu/libc that its name spells, so npm skips it here without fetching anything.
// Run after `npm install` changes the lockfile: `node scripts/lock-foreign-platforms.mjs`.
import { readFileSync, writeFileSync } from 'node:fs'

const path = new URL('../package-lock.json', import.meta.url)
const lock = JSON.parse(readFileSync(path, 'utf8'))
const platforms = {
  'android-arm-eabi': { os: ['android'], cpu: ['arm'] },
  'android-arm64': { os: ['android'], cpu: ['arm64'] },
  'darwin-arm64': { os: ['darwin'], cpu: ['arm64'] },
  'darwin-x64': { os: ['darwin'], cpu: ['x64'] },
  'freebsd-x64': { os: ['freebsd'], cpu: ['x64'] },
  'linux-arm-gnueabihf': { os: ['linux'], cpu: ['arm'] },
  'linux-arm64-gnu': { os: ['linux'], cpu: ['arm64'], libc: ['glibc'] },
  'linux-arm64-musl': { os: ['linux'], cpu: ['arm64'], libc: ['musl'] },
  'linux-ppc64-gnu': { os: ['linux'], cpu: ['ppc64'], libc: ['glibc'] },
  'linux-riscv64-gnu': { os: ['linux'], cpu: ['riscv64'], libc: ['glibc'] },
  'linux-s390x-gnu': { os: ['linux'], cpu: ['s390x'], libc: ['glibc'] },
  'linux-x64-gnu': { os: ['linux'], cpu: ['x64'], libc: ['glibc'] },
  'linux-x64-musl': { os: ['linux'], cpu: ['x64'], libc: ['musl'] },
  'wasm32-wasi': { cpu: ['wasm32'] },
  'win32-arm64-msvc': { os: ['win32'], cpu: ['arm64'] },
  'win32-ia32-msvc': { os: ['win32'], cpu: ['ia32'] },
  'win32-x64-msvc': { os: ['win32'], cpu: ['x64'] },
}
let added = 0
for (const [key, record] of Object.entries(lock.packages)) {
  if (!key) continue // the root's own optionalDependencies are ours and always recorded
  for (const [name, version] of Object.entries(record.optionalDependencies ?? {})) {
    const flat = `node_modules/${name}`
    if (lock.packages[flat] || lock.packages[`${key}/${flat}`]) continue
    const suffix = Object.keys(platforms).find((p) => name.endsWith(`-${p}`))
    if (!suffix) continue
    lock.packages[flat] = { version, dev: record.dev, optional: true, ...platforms[suffix] }
    added++
  }
}
lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))))
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`)
console.log(`lock-foreign-platforms: added ${added} records`)
