// `node scripts/release.mjs`: the publish job of .github/workflows/release.yml, after every
// build artifact was downloaded into artifacts/. `npm run prove:workflows` runs this same file
// against a local registry.
//
// 1. The tag (GITHUB_REF_NAME) is `v` + package.json's version; a pre-release version
//    (1.2.3-rc.1) publishes under the dist-tag `next`, a release under `latest`.
// 2. Each binary goes into its platform package (npm/<platform>), checked to be an ELF file of
//    that package's CPU and nothing else in it; dist/ and the generated loader come from the
//    x64 glibc build.
// 3. `napi pre-publish` publishes the platform packages first and pins the main package's
//    optionalDependencies to this exact version (no GitHub release: `--no-gh-release`).
// 4. The main package, checked to hold only what users need (scripts/packages.mjs), last.
//
// Registry, token and provenance come from npm's configuration: setup-node's .npmrc
// (NODE_AUTH_TOKEN) and NPM_CONFIG_PROVENANCE=true in release.yml, which applies to both the
// platform packages (published by napi) and the main package. On GitHub Actions provenance is
// required; elsewhere there is no OIDC token to sign with.
import { execFileSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, openSync, readFileSync, readSync, closeSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { mainPackageProblems, platformPackageProblems, restoreBinModes, targetDir } from './packages.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const artifacts = join(root, 'artifacts')
const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'))
const writeJson = (path, value) => writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`)
const step = (text) => console.log(`\n== release: ${text}`)
const fail = (why) => {
  console.error(`release FAILED: ${why}`)
  process.exit(1)
}
const run = (command, args, env = {}) => execFileSync(command, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } })

const pkg = readJson(join(root, 'package.json'))
const version = pkg.version
const tag = process.env.GITHUB_REF_NAME
if (tag !== `v${version}`) fail(`the tag ${tag ?? '(GITHUB_REF_NAME unset)'} is not v${version}, the version in package.json`)
const distTag = version.includes('-') ? 'next' : 'latest'
const provenance = process.env.npm_config_provenance ?? process.env.NPM_CONFIG_PROVENANCE
if (process.env.GITHUB_ACTIONS === 'true' && provenance !== 'true') {
  fail('on GitHub Actions the packages are published with provenance: release.yml sets NPM_CONFIG_PROVENANCE=true and id-token: write')
}
step(`${pkg.name}@${version} under the dist-tag ${distTag}${provenance === 'true' ? ', with provenance' : ', without provenance'}`)

const platforms = pkg.napi.targets.map((triple) => ({ triple, dir: targetDir(triple), binary: `${pkg.napi.binaryName}.${targetDir(triple)}.node` }))

if (process.env.GITHUB_REPOSITORY) {
  // Provenance requires the package's repository to be the one that built it.
  step(`repository field: ${process.env.GITHUB_REPOSITORY}`)
  const repository = { type: 'git', url: `git+https://github.com/${process.env.GITHUB_REPOSITORY}.git` }
  for (const path of [join(root, 'package.json'), ...platforms.map((p) => join(root, 'npm', p.dir, 'package.json'))]) {
    writeJson(path, { ...readJson(path), repository })
  }
}

step('binaries into their platform packages')
run('npx', ['napi', 'artifacts', '--output-dir', 'artifacts', '--npm-dir', 'npm'])
const ELF_MACHINE = { x64: 62, arm64: 183 } // e_machine: EM_X86_64, EM_AARCH64
for (const p of platforms) {
  const dir = join(root, 'npm', p.dir)
  const cpu = readJson(join(dir, 'package.json')).cpu[0]
  const file = join(dir, p.binary)
  if (!existsSync(file)) fail(`npm/${p.dir} lacks ${p.binary}: the build job of ${p.triple} uploaded none`)
  const header = Buffer.alloc(20)
  const fd = openSync(file, 'r')
  readSync(fd, header, 0, 20, 0)
  closeSync(fd)
  if (header.readUInt32BE(0) !== 0x7f454c46 || header.readUInt16LE(18) !== ELF_MACHINE[cpu]) {
    fail(`npm/${p.dir}/${p.binary} is not an ELF binary for ${cpu} (e_machine ${header.readUInt16LE(18)})`)
  }
  const problems = platformPackageProblems(dir, p.binary)
  if (problems.length) fail(`npm/${p.dir} ${problems.join('; ')}`)
  console.log(`npm/${p.dir}: ${p.binary} (ELF, ${cpu})`)
}

step('dist/ and the generated loader from the x64 glibc build')
rmSync(join(root, 'dist'), { recursive: true, force: true })
cpSync(join(artifacts, 'dist'), join(root, 'dist'), { recursive: true })
for (const file of ['index.js', 'index.d.ts']) copyFileSync(join(artifacts, 'bindings-x86_64-unknown-linux-gnu', file), join(root, file))
// GitHub's artifacts drop file modes; a `bin` entry must stay executable.
const bins = restoreBinModes(root)
if (bins.length) console.log(`executable: ${bins.join(', ')}`)

step('publish the platform packages (first) and pin optionalDependencies: napi pre-publish')
run('npx', ['napi', 'pre-publish', '-t', 'npm', '--no-gh-release'], { npm_config_tag: distTag, npm_config_access: 'public' })
const pinned = readJson(join(root, 'package.json'))
for (const p of platforms) {
  const name = `${pkg.name}-${p.dir}`
  if (pinned.optionalDependencies?.[name] !== version) fail(`optionalDependencies["${name}"] is ${pinned.optionalDependencies?.[name]}, not ${version}`)
}

step('publish the main package (last)')
// `prepare` builds from source in a clone; users get binaries and must never run it.
delete pinned.scripts.prepare
writeJson(join(root, 'package.json'), pinned)
const problems = mainPackageProblems(root)
if (problems.length) fail(`the main package: ${problems.join('; ')}`)
run('npm', ['publish', '--ignore-scripts', '--access', 'public', '--tag', distTag])
step(`published ${pkg.name}@${version} and its ${platforms.length} platform packages under ${distTag}`)
