// `npm test`: the Rust tests, a fresh build, a type-check of the tests, then the ava suite under
// this Node and, where one is installed (.ci/run installs it; so can you: see the README), under
// Node 24 as well.
// In CI (CI=true) the second Node is required, so a missing one fails instead of being skipped.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const ci = process.env.CI === 'true' || process.env.CI === '1'

function run(label, command, args) {
  console.log(`\n== ${label}: ${command} ${args.join(' ')}`)
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) {
    console.error(`\n== ${label} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`)
    process.exit(r.status || 1)
  }
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const ava = fileURLToPath(new URL('../node_modules/ava/entrypoints/cli.mjs', import.meta.url))
const node24 = process.env.NETRING_NODE24 ?? fileURLToPath(new URL('../.ci/tools/node_modules/.bin/node', import.meta.url))

run('system packages', process.execPath, [fileURLToPath(new URL('system-packages.mjs', import.meta.url))])
run('cargo test', 'cargo', ['test', '--workspace', '--quiet'])
run('build', npm, ['run', '--silent', 'build'])
// The tests run through tsx, which strips types without checking them: check them here, so that
// the public typings are exercised the way users write code.
run('type-check the tests', process.execPath, [fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url)), '-p', '__test__'])
run(`ava on Node ${process.version}`, process.execPath, [ava, ...process.argv.slice(2)])
if (existsSync(node24)) {
  run('ava on Node 24', node24, [ava, ...process.argv.slice(2)])
} else if (ci) {
  console.error(`\n== Node 24 not found at ${node24}: .ci/run installs it; CI must test on Node 20 and 24`)
  process.exit(1)
} else {
  console.log(`\n== (Node 24 not installed at ${node24}: run \`npm i --prefix .ci/tools node@24\` to test on it too)`)
}
