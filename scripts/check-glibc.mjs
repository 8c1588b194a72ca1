// `node scripts/check-glibc.mjs <binary.node> [max]`: fails when the binary needs a glibc symbol
// version newer than `max` (2.17 by default, the baseline of the napi-rs cross toolchain), so
// a gnu binary that would not load on older distributions never ships. readelf reads the
// version needs of any architecture's ELF, so CI checks the arm64 binary on an x64 runner too.
import { execFileSync } from 'node:child_process'

const [file, max = '2.17'] = process.argv.slice(2)
if (!file) {
  console.error('usage: node scripts/check-glibc.mjs <binary.node> [max glibc version]')
  process.exit(2)
}

const versions = [...execFileSync('readelf', ['--version-info', '--wide', file], { encoding: 'utf8' }).matchAll(/Name: GLIBC_([\d.]+)/g)].map((m) => m[1])
const newer = (a, b) => {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number))
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0)
  return false
}
const needed = versions.reduce((hi, v) => (newer(v, hi) ? v : hi), '0')
if (versions.length === 0) {
  console.error(`check-glibc: ${file} needs no versioned glibc symbol: is it a glibc binary?`)
  process.exit(1)
}
if (newer(needed, max)) {
  console.error(`check-glibc: ${file} needs GLIBC_${needed}, newer than the ${max} baseline: build it with --use-napi-cross`)
  process.exit(1)
}
console.log(`check-glibc: ${file} needs at most GLIBC_${needed} (baseline ${max})`)
