// Installs the system packages the tests need beyond the toolchains (`npm test` and the CI test
// containers call this first): a fresh Debian/Ubuntu machine or container has no tcpdump,
// tshark, ethtool or libpcap, and Alpine has neither these nor iproute2's full `ip`.
// Idempotent and silent when everything is there; as root it installs what is missing with
// apt-get or apk, otherwise it says what to install and fails.
import { spawnSync } from 'node:child_process'

const PACKAGES = {
  apt: ['iproute2', 'tcpdump', 'tshark', 'ethtool', 'libpcap0.8', 'python3', 'procps', 'util-linux', 'bsdutils'],
  apk: ['iproute2', 'tcpdump', 'tshark', 'ethtool', 'libpcap', 'python3', 'procps', 'util-linux', 'bash'],
}

// The commands the tests run, from those packages (libpcap is checked by the tests that load it;
// `script`, from bsdutils on Debian, runs the command on a pseudo-terminal).
const COMMANDS = ['ip', 'tcpdump', 'tshark', 'ethtool', 'python3', 'ps', 'nsenter', 'script']
const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
const manager = has('dpkg-query') && has('apt-get') ? 'apt' : has('apk') ? 'apk' : null
if (!manager) {
  // Another distribution (Fedora, Arch, ...): nothing to install with; pass when the tools the
  // tests run are there, whatever installed them.
  const absent = COMMANDS.filter((command) => !has(command))
  if (absent.length === 0) process.exit(0)
  console.error(`system-packages: neither apt-get nor apk found and ${absent.join(', ')} missing: install by hand: ${PACKAGES.apt.join(' ')}`)
  process.exit(1)
}

const wanted = PACKAGES[manager]
const missing =
  manager === 'apt'
    ? wanted.filter((p) => !/install ok installed/.test(spawnSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' }).stdout ?? ''))
    : wanted.filter((p) => spawnSync('apk', ['info', '-e', p], { stdio: 'ignore' }).status !== 0)
if (missing.length === 0) process.exit(0)

const install = manager === 'apt' ? ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...missing] : ['apk', 'add', '--no-cache', ...missing]
if (process.getuid?.() !== 0) {
  console.error(`system-packages: the tests need ${missing.join(', ')}: run \`sudo ${install.join(' ')}\` (or run the tests as root)`)
  process.exit(1)
}
console.log(`system-packages: installing ${missing.join(', ')} with ${manager}`)
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
const run = (argv) => {
  const r = spawnSync(argv[0], argv.slice(1), { env, stdio: ['ignore', 'ignore', 'inherit'] })
  if (r.status !== 0) {
    console.error(`system-packages: \`${argv.join(' ')}\` failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`)
    process.exit(1)
  }
}
if (manager === 'apt') run(['apt-get', 'update', '-qq'])
run(install)
