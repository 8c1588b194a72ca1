// `npm run prove:workflows` (root; .ci/run runs it): runs the GitHub workflows' jobs here, as far
// as this machine allows, from the workflow files themselves (scripts/prove/runner.mjs), so the
// scripts the workflows call are the scripts tried here.
//
// 1. ci.yml, job `build`, x86_64-unknown-linux-gnu: as a throwaway unprivileged user with
//    passwordless sudo and its own rustup/cargo home, as on a GitHub-hosted runner
//    (scripts/prove/sandbox.mjs), in a checkout it owns. Afterwards nothing in target/,
//    node_modules or the user's cargo and napi-rs homes may belong to anyone else (what
//    `sudo cargo test` used to break), and the addon built after the engine tests must exist.
// 2. ci.yml, job `test`, x86_64-unknown-linux-gnu on this machine's Node: `docker run` of a
//    privileged container stands in as the same command run as root in place (a shim); the
//    suite is cut to NETRING_PROVE_SPECS (default: the loader spec and one capture spec), since
//    `npm test` runs the whole suite anyway.
// 3. release.yml, job `publish`, twice (a pre-release tag, then a release tag), with the x64
//    glibc binary from step 1 and stand-ins for the three targets that cannot be built here
//    (ELF headers of the right machine), publishing to a local registry
//    (scripts/prove/registry.mjs): every platform package holds its binary, all five versions
//    match, optionalDependencies are pinned, the platform packages arrive before the main
//    package, the pre-release goes to `next` and the release to `latest`; provenance is checked
//    in the workflow (id-token: write, NPM_CONFIG_PROVENANCE) since nothing can sign here.
// 4. The published x64 glibc and main tarballs install offline and load from CommonJS and ESM
//    (scripts/install-check.mjs, shared with pack:check).
import { execFileSync } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { installCheck } from './install-check.mjs'
import { mainPackageProblems, targetDir } from './packages.mjs'
import { startRegistry } from './prove/registry.mjs'
import { loadWorkflow, matrixFor, runJob } from './prove/runner.mjs'
import { chownToUser, createSandbox, notOwnedByUser, stopAll } from './prove/sandbox.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const HOST_TARGET = 'x86_64-unknown-linux-gnu'
const REPOSITORY = 'netring/netring'
const specs = (process.env.NETRING_PROVE_SPECS ?? '__test__/loader.spec.ts __test__/capture-filter.spec.ts').split(/\s+/).filter(Boolean)
const started = Date.now()
const step = (text) => console.log(`\n==== prove:workflows: ${text} (${Math.round((Date.now() - started) / 1000)} s)`)
const check = (ok, what) => {
  if (!ok) throw new Error(what)
  console.log(`   ok: ${what}`)
}

if (process.getuid() !== 0) {
  console.error('prove:workflows needs root (it creates a throwaway user and gives it sudo)')
  process.exit(1)
}
for (const tool of ['sudo', 'useradd', 'userdel']) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' })
  } catch {
    console.error(`prove:workflows needs ${tool} (.ci/run installs sudo)`)
    process.exit(1)
  }
}
const node24 = process.env.NETRING_NODE24 ?? join(root, '.ci/tools/node_modules/node/bin/node')
if (!existsSync(node24)) {
  console.error(`prove:workflows needs Node 24 at ${node24} (the workflows' setup-node): npm i --prefix .ci/tools node@24`)
  process.exit(1)
}

const ci = loadWorkflow(join(root, '.github/workflows/ci.yml'))
const release = loadWorkflow(join(root, '.github/workflows/release.yml'))
const work = mkdtempSync(join(tmpdir(), 'netring-prove-'))
const sandbox = createSandbox({ work, node24 })
const artifacts = join(work, 'artifacts')
let registry
let jobs = 0
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    console.error(`\nprove:workflows: ${signal}, removing the user ${sandbox.user} and its files`)
    stopAll()
    sandbox.cleanup()
    process.exit(130)
  })
}

/**
 * A fresh checkout for a job: the repository's files as they are here, owned by the user, in a
 * directory the user owns too (napi stages files beside the checkout, as GitHub's runner
 * allows in /home/runner/work/<repo>).
 */
function checkout() {
  const parent = join(work, 'jobs')
  mkdirSync(parent, { recursive: true })
  chownToUser(sandbox, parent)
  const dir = join(parent, `job-${++jobs}`)
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean)
  for (const file of files) {
    if (!existsSync(join(root, file))) continue // deleted, not yet committed
    mkdirSync(join(dir, dirname(file)), { recursive: true })
    cpSync(join(root, file), join(dir, file), { preserveTimestamps: true, verbatimSymlinks: true })
  }
  chownToUser(sandbox, dir)
  return dir
}

/** A shim for `docker run --rm --privileged … IMAGE COMMAND…`: COMMAND as root in place, with -e variables and the ava specs to run. */
function dockerShim() {
  const dir = join(work, 'shims')
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    join(dir, 'docker'),
    `#!/bin/sh
# Stand-in for docker: runs the container's command as root in the mounted checkout.
set -eu
[ "$1" = run ] || { echo "docker stand-in: only 'run'" >&2; exit 2; }
shift
envs="" workdir="" mount=""
while [ $# -gt 0 ]; do
  case $1 in
    --rm|--privileged) shift ;;
    -e) envs="$envs $2"; shift 2 ;;
    -v) mount=$2; shift 2 ;;
    -w) workdir=$2; shift 2 ;;
    -*) echo "docker stand-in: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
image=$1; shift
[ "$mount" = "$PWD:$workdir" ] || { echo "docker stand-in: the checkout must be mounted at -w ($mount, $workdir)" >&2; exit 2; }
echo "docker stand-in: $image: $* ${specs.join(' ')} (as root, here)"
exec sudo env $envs PATH="$PATH" "$@" ${specs.join(' ')}
`,
  )
  chmodSync(join(dir, 'docker'), 0o755)
  chownToUser(sandbox, dir)
  return dir
}

/** A stand-in binary: the 64-byte ELF header of a little-endian shared object for `cpu`. */
function standInBinary(cpu) {
  const header = Buffer.alloc(64)
  header.writeUInt32BE(0x7f454c46, 0) // \x7fELF
  header[4] = 2 // ELFCLASS64
  header[5] = 1 // little-endian
  header[6] = 1 // EV_CURRENT
  header.writeUInt16LE(3, 16) // ET_DYN
  header.writeUInt16LE({ x64: 62, arm64: 183 }[cpu], 18) // EM_X86_64, EM_AARCH64
  return header
}

/** Runs release.yml's publish job for `version` and checks what reached the registry. */
async function publishAndCheck(version, expectedTag) {
  const workspace = checkout()
  for (const file of ['package.json', ...pkg.napi.targets.map((t) => `npm/${targetDir(t)}/package.json`)]) {
    // The release commit: every package at the tag's version (napi pre-publish also sets the platform ones).
    const path = join(workspace, file)
    writeFileSync(path, readFileSync(path, 'utf8').replace(`"version": "${pkg.version}"`, `"version": "${version}"`))
  }
  const before = registry.publishes.length
  await runJob({
    workflow: release,
    jobId: 'publish',
    sandbox,
    workspace,
    artifacts,
    github: { ref_name: `v${version}`, repository: REPOSITORY },
    secrets: { NPM_TOKEN: 'stand-in-token' },
    // No OIDC token to sign with here; release.yml's own setting is checked above.
    override: { NPM_CONFIG_PROVENANCE: 'false' },
    registryFor: () => registry.url,
  })
  const publishes = registry.publishes.slice(before)
  const names = publishes.map((p) => p.name)
  const platformNames = pkg.napi.targets.map((t) => `${pkg.name}-${targetDir(t)}`)
  check(publishes.length === platformNames.length + 1 && platformNames.every((n) => names.includes(n)) && names.at(-1) === pkg.name, `${version}: the ${platformNames.length} platform packages, then ${pkg.name} last (${names.join(', ')})`)
  check(publishes.every((p) => p.version === version), `${version}: every package at ${version}`)
  check(publishes.every((p) => JSON.stringify(p.distTags) === JSON.stringify({ [expectedTag]: version })), `${version}: published under the dist-tag ${expectedTag} only`)
  const main = publishes.at(-1)
  check(platformNames.every((n) => main.manifest.optionalDependencies?.[n] === version), `${version}: optionalDependencies pinned to ${version}`)
  check(publishes.every((p) => p.manifest.repository?.url === `git+https://github.com/${REPOSITORY}.git`), `${version}: every package names the repository that built it (provenance needs it)`)
  const out = join(work, `published-${version}`)
  mkdirSync(out, { recursive: true })
  const tarballs = {}
  for (const p of publishes) {
    const file = join(out, `${p.name}-${p.version}.tgz`)
    writeFileSync(file, p.tarball)
    tarballs[p.name] = file
    if (p.name === pkg.name) continue
    const platform = p.name.slice(pkg.name.length + 1)
    const binary = `${pkg.napi.binaryName}.${platform}.node`
    const listing = execFileSync('tar', ['-tzf', file], { encoding: 'utf8' }).split('\n').filter(Boolean)
    // The binary itself on stdout: past execFileSync's default 1 MiB limit (ENOBUFS) once it grew.
    const packed = execFileSync('tar', ['-xzOf', file, `package/${binary}`], { maxBuffer: 256 << 20 })
    const built = readFileSync(join(artifacts, `bindings-${pkg.napi.targets.find((t) => targetDir(t) === platform)}`, binary))
    check(listing.includes(`package/${binary}`) && packed.equals(built), `${version}: ${p.name} holds its binary, byte for byte the build's`)
  }
  const extracted = join(out, 'main')
  mkdirSync(extracted)
  execFileSync('tar', ['-xzf', tarballs[pkg.name], '-C', extracted])
  const problems = mainPackageProblems(join(extracted, 'package'))
  check(problems.length === 0, `${version}: the main package holds what users need and nothing else${problems.length ? `: ${problems.join('; ')}` : ''}`)
  return { tarballs, manifest: main.manifest }
}

try {
  step('the workflows as GitHub would start them')
  const publish = release.jobs.publish
  check(release.jobs.ci?.uses === './.github/workflows/ci.yml' && [publish.needs].flat().includes('ci'), 'release.yml publishes only after ci.yml passed')
  check(publish.permissions?.['id-token'] === 'write', 'release.yml: the publish job may request an OIDC token (id-token: write), which provenance needs')
  const provenance = { ...publish.env, ...Object.assign({}, ...publish.steps.map((s) => s.env ?? {})) }.NPM_CONFIG_PROVENANCE
  check(String(provenance) === 'true', 'release.yml: NPM_CONFIG_PROVENANCE=true for every publish (napi pre-publish and npm publish)')

  step(`ci.yml build ${HOST_TARGET}, as the unprivileged user ${sandbox.user} with sudo`)
  const buildDir = checkout()
  await runJob({ workflow: ci, jobId: 'build', matrix: matrixFor(ci.jobs.build, { target: HOST_TARGET }), sandbox, workspace: buildDir, artifacts })
  const foreign = notOwnedByUser(sandbox, [join(buildDir, 'target'), join(buildDir, 'node_modules'), join(sandbox.home, '.cargo'), join(sandbox.home, '.napi-rs'), join(sandbox.home, '.npm')])
  check(foreign.length === 0, `target/, node_modules, ~/.cargo, ~/.napi-rs and ~/.npm belong to ${sandbox.user} after the engine tests ran as root${foreign.length ? `: ${foreign.join(', ')}` : ''}`)
  const binary = `${pkg.napi.binaryName}.${targetDir(HOST_TARGET)}.node`
  check(existsSync(join(artifacts, `bindings-${HOST_TARGET}`, binary)) && existsSync(join(artifacts, 'dist/index.js')), `the build after the engine tests produced ${binary} and dist/`)

  step(`ci.yml test ${HOST_TARGET} on Node ${process.versions.node.split('.')[0]} (${specs.join(', ')})`)
  const testDir = checkout()
  const shims = dockerShim()
  await runJob({
    workflow: ci,
    jobId: 'test',
    matrix: matrixFor(ci.jobs.test, { target: HOST_TARGET, node: process.versions.node.split('.')[0] }),
    sandbox,
    workspace: testDir,
    artifacts,
    env: { PATH: `${shims}:${sandbox.home}/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` },
  })

  step('release.yml publish, with stand-ins for the binaries that cannot be built here')
  for (const triple of pkg.napi.targets.filter((t) => t !== HOST_TARGET)) {
    const dir = join(artifacts, `bindings-${triple}`)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, `${pkg.napi.binaryName}.${targetDir(triple)}.node`), standInBinary(triple.startsWith('aarch64') ? 'arm64' : 'x64'))
    for (const file of ['index.js', 'index.d.ts']) cpSync(join(artifacts, `bindings-${HOST_TARGET}`, file), join(dir, file))
  }
  registry = await startRegistry({
    upstream: execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8' }).trim(),
    owns: (name) => name === pkg.name || name.startsWith(`${pkg.name}-`),
  })
  console.log(`   local registry: ${registry.url}`)
  const base = pkg.version.replace(/-.*/, '')
  await publishAndCheck(`${base}-rc.1`, 'next')
  const { tarballs, manifest } = await publishAndCheck(base, 'latest')

  step('the published tarballs install offline and load from CommonJS and ESM')
  installCheck({ tarballs: [tarballs[`${pkg.name}-${targetDir(HOST_TARGET)}`], tarballs[pkg.name]], platform: targetDir(HOST_TARGET), pkg: manifest, log: (text) => console.log(`\n   ${text}`) })

  step('passed')
} catch (e) {
  console.error(`\nprove:workflows FAILED: ${e.message}`)
  process.exitCode = 1
} finally {
  await registry?.close()
  sandbox.cleanup()
}
