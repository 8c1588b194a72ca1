// A throwaway unprivileged user set up like a GitHub-hosted runner's: its own home with rustup
// and cargo in it (~/.rustup, ~/.cargo, found through HOME as on the runner), passwordless sudo,
// and Node from a tool cache. Its toolchain is this machine's, linked read-only (the files stay
// root's); the cargo registry, npm cache and napi-rs cross toolchain are copies it owns, as
// actions/cache and setup-node's npm cache would restore them.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { basename, join } from 'node:path'

const sh = (command, args) => execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim()
const RUSTUP_PROXIES = ['cargo', 'rustc', 'rustdoc', 'cargo-clippy', 'clippy-driver', 'rustfmt', 'cargo-fmt']

/**
 * Creates the user and its home under `work`. `node24` is a Node 24 binary for setup-node
 * (node-version: 24); the machine's `node` serves its own major version.
 */
export function createSandbox({ work, node24 }) {
  const user = `netring-ci${process.pid % 100000}`
  const home = join(work, 'home')
  const sudoers = `/etc/sudoers.d/netring-prove-${user}`
  mkdirSync(home, { recursive: true })
  sh('useradd', ['--no-create-home', '--home-dir', home, '--shell', '/bin/sh', '--user-group', user])
  const uid = Number(sh('id', ['-u', user]))
  const gid = Number(sh('id', ['-g', user]))
  const sandbox = { user, uid, gid, home, work, toolcache: join(work, 'toolcache') }
  sandbox.cleanup = () => {
    rmSync(sudoers, { force: true })
    // userdel refuses while a process of the user is still exiting: try for a few seconds.
    const exists = () => spawnSync('id', ['-u', user], { stdio: 'ignore' }).status === 0
    for (let attempt = 0; attempt < 20 && exists(); attempt++) {
      if (spawnSync('userdel', [user], { stdio: 'ignore' }).status !== 0) spawnSync('sleep', ['0.25'])
    }
    rmSync(work, { recursive: true, force: true })
  }
  try {
    // As on GitHub's runners: passwordless sudo for the runner user.
    writeFileSync(sudoers, `${user} ALL=(ALL) NOPASSWD:ALL\n`, { mode: 0o440 })

    // rustup in the user's home, its toolchain hard-linked from this machine's: read-only for
    // the user (root's files), nothing copied.
    const sysroot = sh('rustc', ['--print', 'sysroot'])
    const toolchain = basename(sysroot)
    mkdirSync(join(home, '.rustup/toolchains'), { recursive: true })
    sh('cp', ['-al', sysroot, join(home, '.rustup/toolchains', toolchain)])
    writeFileSync(join(home, '.rustup/settings.toml'), `version = "12"\ndefault_toolchain = "${toolchain}"\nprofile = "default"\nauto_self_update = "disable"\n`)
    mkdirSync(join(home, '.cargo/bin'), { recursive: true })
    // rustup itself is copied, not linked: ~/.cargo becomes the user's below (chown -R), and
    // chown on a hard link would hand this machine's own rustup to the throwaway user.
    copyFileSync(realpathSync(sh('sh', ['-c', 'command -v rustup'])), join(home, '.cargo/bin/rustup'))
    chmodSync(join(home, '.cargo/bin/rustup'), 0o755)
    for (const proxy of RUSTUP_PROXIES) symlinkSync('rustup', join(home, '.cargo/bin', proxy))

    // Restored caches: copies the user owns.
    const copies = [
      [join(homedir(), '.cargo/registry'), join(home, '.cargo/registry')],
      [join(homedir(), '.npm/_cacache'), join(home, '.npm/_cacache')],
      [join(homedir(), '.napi-rs'), join(home, '.napi-rs')],
    ]
    for (const [from, to] of copies) {
      if (!existsSync(from)) continue
      mkdirSync(join(to, '..'), { recursive: true })
      sh('cp', ['-a', from, to])
    }
    // Everything in the home but the linked toolchain is the user's.
    sh('chown', [`${uid}:${gid}`, home, join(home, '.rustup'), join(home, '.rustup/toolchains'), join(home, '.rustup/settings.toml')])
    for (const dir of ['.cargo', '.npm', '.napi-rs']) if (existsSync(join(home, dir))) sh('chown', ['-R', `${uid}:${gid}`, join(home, dir)])

    // setup-node's tool cache: Node 24 (hard-linked), and this machine's Node for its major.
    const machineMajor = process.versions.node.split('.')[0]
    for (const [major, binary] of [['24', node24], [machineMajor, process.execPath]]) {
      if (!binary || existsSync(join(sandbox.toolcache, major))) continue
      mkdirSync(join(sandbox.toolcache, major, 'bin'), { recursive: true })
      linkSync(realpathSync(binary), join(sandbox.toolcache, major, 'bin/node'))
    }
    sh('chmod', ['755', work, sandbox.toolcache])
  } catch (e) {
    sandbox.cleanup()
    throw e
  }
  return sandbox
}

/** This machine's network settings (its CA bundle, proxies): what the runner's network would not need. */
const NETWORK = /^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|CURL_CA_BUNDLE|GIT_SSL_CAINFO|(HTTPS?|NO|ALL)_PROXY)$/i

/** The environment of a step run as the sandbox user, before the job's and step's own. */
export function userEnv(sandbox, extra = {}) {
  return {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => NETWORK.test(k))),
    HOME: sandbox.home,
    USER: sandbox.user,
    LOGNAME: sandbox.user,
    LANG: 'C.UTF-8',
    CI: 'true',
    PATH: `${sandbox.home}/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    ...extra,
  }
}

const running = new Set()

/**
 * Runs `command args` as the sandbox user (or as root with `asRoot`) in a process group of its
 * own, so that stopAll() can end it with everything it started; resolves with the exit status,
 * never rejects.
 */
export function runAs(sandbox, command, args, { cwd, env, asRoot = false }) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env, stdio: 'inherit', detached: true, ...(asRoot ? {} : { uid: sandbox.uid, gid: sandbox.gid }) })
    running.add(child)
    child.on('error', (e) => {
      running.delete(child)
      console.error(`${command}: ${e.message}`)
      resolve(127)
    })
    child.on('exit', (code, signal) => {
      running.delete(child)
      resolve(code ?? (signal ? 128 : 1))
    })
  })
}

/** Kills the process groups of the steps still running (on Ctrl-C or SIGTERM). */
export function stopAll() {
  for (const child of running) {
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

/** Gives `path` (recursively) to the sandbox user. */
export function chownToUser(sandbox, path) {
  sh('chown', ['-R', `${sandbox.uid}:${sandbox.gid}`, path])
}

/** Paths under `dirs` not owned by the sandbox user (at most `limit`). */
export function notOwnedByUser(sandbox, dirs, limit = 10) {
  const existing = dirs.filter((d) => existsSync(d))
  if (existing.length === 0) return []
  const out = execFileSync('find', [...existing, '!', '-user', String(sandbox.uid)], { encoding: 'utf8', maxBuffer: 64 << 20 })
  return out.split('\n').filter(Boolean).slice(0, limit)
}
