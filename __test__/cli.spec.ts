// The `netring` command, run as a user runs it: a child process on real interfaces, its files
// checked with tshark, its output lines, summaries and exit codes checked as text.

import { execFile, execFileSync, spawn } from 'node:child_process'
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

import test, { type ExecutionContext } from 'ava'
import { Capture, PcapWriter, readCaptureFile } from 'netring'

import { collect } from './helpers/collect'
import { localVethPair, sendFrames, sh, vethPair } from './helpers/net'
import { tsharkFrames, tsharkInterfaceStats } from './helpers/tshark'
import { ipv4Frame, mixedTraffic, udp } from './helpers/traffic'

const CLI = join(process.cwd(), 'dist/cli/main.js')
const execFileAsync = promisify(execFile)

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'netring-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

interface Run {
  /** Resolves once stderr (the terminal's text, under `terminal`) matches `text`. */
  saw(text: string | RegExp): Promise<void>
  /** Under `terminal`, SIGINT is a Ctrl-C typed on the terminal. */
  signal(name: NodeJS.Signals): void
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>
}

interface RunOptions {
  timeoutMs?: number
  /**
   * Run on a pseudo-terminal (util-linux `script`), as in an interactive shell: stdout and
   * stderr are the terminal, and what it shows comes back as `stderr`.
   */
  terminal?: boolean
}

const shellQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`

/** Runs the command (killed after `timeoutMs`, so a hang fails the test instead of the suite). */
function netring(t: ExecutionContext, args: string[], { timeoutMs = 30_000, terminal = false }: RunOptions = {}): Run {
  // `script -e` exits with the command's status; its stdin stays open so that it keeps running
  // (and passes a typed Ctrl-C on to the terminal). `script` runs the command through $SHELL (or
  // /bin/sh when unset, as under CI): `exec` leaves no shell in between that a Ctrl-C would kill
  // (dash dies of SIGINT while it waits, so the status would be 130 whatever the command did).
  const command = `exec ${[CLI, ...args].map(shellQuote).join(' ')}`
  const child = terminal
    ? spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(CLI, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  const waiters: { text: string | RegExp; resolve: () => void }[] = []
  const onStderr = (d: Buffer) => {
    stderr += d
    for (const w of waiters.splice(0)) {
      if (typeof w.text === 'string' ? stderr.includes(w.text) : w.text.test(stderr)) w.resolve()
      else waiters.push(w)
    }
  }
  child.stdout!.on('data', terminal ? onStderr : (d) => (stdout += d))
  child.stderr!.on('data', terminal ? (d) => (stdout += d) : onStderr)
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    }),
  )
  t.teardown(() => {
    child.kill('SIGKILL')
    return done.then(() => undefined)
  })
  return {
    saw: (text) =>
      new Promise<void>((resolve, reject) => {
        if (typeof text === 'string' ? stderr.includes(text) : text.test(stderr)) return resolve()
        waiters.push({ text, resolve })
        void done.then((r) => reject(new Error(`netring exited (${r.code ?? r.signal}) before printing ${String(text)}: ${r.stderr}`)))
      }),
    signal: (name) => (terminal && name === 'SIGINT' ? child.stdin!.write('\x03') : child.kill(name)),
    done,
  }
}

/** Every status line drawn (`\r`, erase line, then the line), in order. */
function statusLines(text: string) {
  const re = /\r\x1b\[K(\d+) packets, (\d+) pps, (\d+\.\d) Mbit\/s, (\d+) drops(?:, (\d+(?:\.\d)? [KMG]iB))?/g
  return [...text.matchAll(re)].map((m) => ({ packets: Number(m[1]), pps: Number(m[2]), drops: Number(m[4]), file: m[5] }))
}

/** The text a terminal shows at the end: carriage returns, newlines and erase-line applied. */
function screen(text: string): string[] {
  const lines: string[] = ['']
  let col = 0
  for (const part of text.split(/(\r|\n|\x1b\[K)/)) {
    const row = lines.length - 1
    if (part === '\r') col = 0
    else if (part === '\n') {
      lines.push('')
      col = 0
    } else if (part === '\x1b[K') lines[row] = lines[row].slice(0, col)
    else {
      lines[row] = lines[row].slice(0, col) + part + lines[row].slice(col + part.length)
      col += part.length
    }
  }
  return lines
}

async function readAll(path: string) {
  const out = []
  for await (const p of readCaptureFile(path)) out.push(p)
  return out
}

/**
 * Waits (up to 30 s) until the files `paths()` names hold `count` packets between them (their
 * sizes cannot say so: record headers count in them too). A file being written may end in the
 * middle of a batch: it counts as empty until it is whole.
 */
async function filesHold(paths: () => string[], count: number): Promise<void> {
  for (let waited = 0; waited < 30_000; waited += 50) {
    let n = 0
    for (const path of paths()) {
      n += await readAll(path).then(
        (p) => p.length,
        () => 0,
      )
    }
    if (n >= count) return
    await new Promise((r) => setTimeout(r, 50))
  }
}

test('the bin is an executable script with a shebang, as npm installs it', (t) => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { bin: Record<string, string> }
  t.is(pkg.bin.netring, 'dist/cli/main.js')
  accessSync(CLI, constants.X_OK)
  t.true(readFileSync(CLI, 'utf8').startsWith('#!/usr/bin/env node\n'))
})

test('capture -c -w EXPRESSION: exactly COUNT matching frames in a file tshark reads, and the summary', async (t) => {
  const veth = vethPair(t)
  const file = join(tempDir(t), 'out.pcapng')
  const run = netring(t, ['capture', '-i', veth.near, '-c', '5', '-w', file, 'udp', 'dst', 'port', '7777'])
  await run.saw('listening on')
  const traffic = mixedTraffic(veth.nearMac, veth.farMac)
  await veth.send(traffic)
  const r = await run.done
  t.is(r.code, 0, r.stderr)
  const want = traffic.filter((f) => f.length > 37 && f.readUInt16BE(12) === 0x0800 && f[23] === 17 && f.readUInt16BE(36) === 7777)
  t.true(want.length > 5)
  const frames = tsharkFrames(file)
  t.deepEqual(
    frames.map((f) => f.bytes),
    want.slice(0, 5),
  )
  t.is(frames[0].interfaceName, veth.near)
  t.regex(r.stderr, /^5 packets captured$/m)
  t.regex(r.stderr, /^\d+ packets received by filter$/m)
  t.regex(r.stderr, /^0 packets dropped by kernel$/m)
})

test('capture without -w prints a line per packet like tcpdump', async (t) => {
  const veth = vethPair(t)
  const traffic = mixedTraffic(veth.nearMac, veth.farMac)
  const run = netring(t, ['capture', '-i', veth.near, '-c', String(traffic.length), '-n'])
  await run.saw('listening on')
  await veth.send(traffic)
  const r = await run.done
  t.is(r.code, 0, r.stderr)
  const lines = r.stdout.trim().split('\n')
  t.is(lines.length, traffic.length)
  const time = String.raw`\d\d:\d\d:\d\d\.\d{6}`
  const expect = [
    String.raw`^${time} In IP 10\.99\.0\.1\.5000 > 10\.99\.0\.2\.7777: UDP, length 20$`,
    String.raw`^${time} In IP 192\.168\.1\.7\.40000 > 10\.0\.0\.1\.443: Flags \[S\], length 0$`,
    String.raw`^${time} In IP 10\.99\.0\.1 > 10\.99\.0\.2: ICMP echo request, id 1, seq 1, length 64$`,
    String.raw`^${time} In IP6 fe80::1\.5000 > 2001:db8::2\.53: UDP, length 40$`,
    String.raw`^${time} In ARP, Request who-has 10\.99\.0\.2 tell 10\.99\.0\.1, length 28$`,
    String.raw`^${time} In vlan 100, p 0, IP 10\.99\.0\.1\.5000 > 10\.99\.0\.2\.53: UDP, length 12$`,
    String.raw`^${time} In ethertype Unknown \(0x88b5\), length 60$`,
  ]
  for (const e of expect) t.true(lines.some((l) => new RegExp(e).test(l)), `a line like ${e}`)
  // The same UDP and ICMP lines as tcpdump prints for the same frames (less the direction; UDP to
  // ports tcpdump decodes further, like DNS, aside).
  const dir = tempDir(t)
  const file = join(dir, 'same.pcap')
  const w = PcapWriter.open(file, { format: 'pcap' })
  for (const f of traffic) w.write({ data: f, timestamp: { sec: 0, nsec: 0 }, originalLength: f.length, direction: 'host' } as never)
  w.close()
  const theirs = execFileSync('tcpdump', ['-n', '-r', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .split('\n')
    .filter((l) => /^\S/.test(l)) // not the hex dumps tcpdump adds for unknown ethertypes
    .map((l) => l.replace(/^\S+ /, ''))
  const ours = lines.map((l) => l.replace(/^\S+ \S+ /, ''))
  ours.forEach((l, i) => {
    if (/^IP \S+ > \S+\.7777: UDP|ICMP echo/.test(l)) t.is(l, theirs[i])
  })
  t.true(ours.filter((l) => /\.7777: UDP|ICMP echo/.test(l)).length >= 16)
})

test('a bad expression, an unknown interface or option: one line on stderr, exit 1, no stack', async (t) => {
  const cases: [string[], RegExp][] = [
    [['capture', '-i', 'lo', 'tcp', 'port'], /syntax error/],
    [['capture', '-i', 'nosuchif0'], /nosuchif0.*No such device/],
    [['capture', '-i', 'lo', '--bogus'], /unknown option --bogus/],
    [['capture', '-i', 'lo', '-c', 'many'], /-c needs an integer/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['replay', '-i', 'lo', '/nonexistent.pcap'], /ENOENT|no such file/i],
    [['replay', '-i', 'lo', '--loop', '2', '-'], /--loop needs a FILE/],
    // Options of a live capture are refused with -r, not ignored (`-r in -w out` wrote nothing).
    [['capture', '-r', '/nonexistent.pcap', '-w', '/nonexistent/out.pcap'], /-w cannot be used with -r/],
    [['capture', '-r', '/nonexistent.pcap', '-i', 'lo', '-G', '1'], /-i cannot be used with -r/],
    // A file that cannot be opened is the first thing said, before any "listening on".
    [['capture', '-i', 'lo', '-w', '/nonexistent/out.pcap'], /\/nonexistent\/out\.pcap.*(ENOENT|no such file)/i],
    [['capture', '-i', 'lo', '--workers', '2', '-w', '/nonexistent/out.pcap'], /\/nonexistent\/out\.pcap.*(ENOENT|no such file)/i],
    // A bridge from an interface to itself sends every frame back where it came from.
    [['bridge', 'lo', 'lo'], /b: must be another interface than a/],
  ]
  for (const [args, why] of cases) {
    const r = await netring(t, args).done
    t.is(r.code, 1, args.join(' '))
    t.is(r.signal, null)
    const first = r.stderr.split('\n')[0]
    t.regex(first, /^netring: /)
    t.regex(first, why)
    t.notRegex(r.stderr, /^\s+at /m, 'no stack trace')
  }
})

// A terminal and a parent both send a Ctrl-C; a terminal that goes away sends SIGHUP (tcpdump
// finishes its file then too).
for (const [label, signals] of [
  ['Ctrl-C delivered twice', ['SIGINT', 'SIGINT']],
  ['SIGHUP (the terminal went away)', ['SIGHUP']],
] as const) {
  test(`${label} finishes the file and prints the summary, exit 0`, async (t) => {
    const veth = vethPair(t)
    const file = join(tempDir(t), 'interrupted.pcapng')
    const run = netring(t, ['capture', '-i', veth.near, '-w', file])
    await run.saw('listening on')
    const traffic = mixedTraffic(veth.nearMac, veth.farMac)
    await veth.send(traffic)
    // Wait until every frame is in the file, so the count below is exact.
    await filesHold(() => [file], traffic.length)
    for (const name of signals) run.signal(name)
    const r = await run.done
    t.is(r.signal, null, `not killed by ${signals.join(', ')}`)
    t.is(r.code, 0, r.stderr)
    t.regex(r.stderr, new RegExp(`^${traffic.length} packets captured$`, 'm'))
    t.deepEqual(
      tsharkFrames(file).map((f) => f.bytes),
      traffic,
    )
    const stats = tsharkInterfaceStats(file)
    t.is(stats.dropped, 0)
    t.true(stats.received >= traffic.length)
  })
}

test('list --json matches ip -d -s link', async (t) => {
  const veth = vethPair(t)
  await veth.send(mixedTraffic(veth.nearMac, veth.farMac).slice(0, 10))
  const r = await netring(t, ['list', '--json']).done
  t.is(r.code, 0, r.stderr)
  const ours = (JSON.parse(r.stdout) as { name: string }[]).find((i) => i.name === veth.near) as Record<string, any>
  const ip = JSON.parse(sh('ip', ['-d', '-s', '-j', 'link', 'show', veth.near]))[0]
  t.is(ours.index, ip.ifindex)
  t.is(ours.mtu, ip.mtu)
  t.is(ours.mac, ip.address)
  t.is(ours.operstate, ip.operstate.toLowerCase())
  t.is(ours.flags.up, ip.flags.includes('UP'))
  t.is(ours.flags.loopback, ip.flags.includes('LOOPBACK'))
  t.is(ours.flags.promiscuous, ip.flags.includes('PROMISC'))
  t.is(ours.driver, ip.linkinfo.info_kind) // 'veth', as ethtool -i says too
  t.is(ours.rxQueues, ip.num_rx_queues)
  t.is(ours.txQueues, ip.num_tx_queues)
  t.deepEqual(
    [ours.rx.packets, ours.rx.bytes, ours.rx.errors, ours.rx.drops],
    [ip.stats64.rx.packets, ip.stats64.rx.bytes, ip.stats64.rx.errors, ip.stats64.rx.dropped],
  )
  t.deepEqual([ours.tx.packets, ours.tx.bytes], [ip.stats64.tx.packets, ip.stats64.tx.bytes])
  t.true(ours.rx.packets >= 10)
  const table = await netring(t, ['list']).done
  t.regex(table.stdout, new RegExp(`^${ip.ifindex}\\s+${veth.near}\\s+up\\s+1500\\s`, 'm'))
})

/** A file of 40 frames from `link.a` to `link.b`, a millisecond apart. */
function replayFile(t: ExecutionContext, link: { aMac: Buffer; bMac: Buffer }) {
  const file = join(tempDir(t), 'replay.pcapng')
  const frames = mixedTraffic(link.bMac, link.aMac).slice(0, 40)
  const w = PcapWriter.open(file)
  frames.forEach((f, i) => w.write({ data: f, timestamp: { sec: 100, nsec: i * 1_000_000 }, originalLength: f.length, direction: 'host' } as never))
  w.close()
  return { file, frames }
}

for (const pace of [['--top', '--loop', '2'], [], ['--pps', '2000'], ['--speed', '4']]) {
  test(`replay ${pace.join(' ') || '(at the file’s pace)'} sends the file’s frames in order`, async (t) => {
    const link = localVethPair(t)
    const { file, frames } = replayFile(t, link)
    using cap = Capture.open(link.b)
    const loops = pace.includes('--loop') ? 2 : 1
    const r = await netring(t, ['replay', '-i', link.a, file, ...pace]).done
    t.is(r.code, 0, r.stderr)
    t.regex(r.stderr, new RegExp(`^Actual: ${frames.length * loops} packets`, 'm'))
    const got = await collect(cap, frames.length * loops, { match: (p) => p.direction !== 'outgoing' })
    t.deepEqual(
      got.map((p) => p.data),
      Array.from({ length: loops }, () => frames).flat(),
    )
  })
}

test('bridge A B EXPRESSION forwards what the expression accepts, and nothing else', async (t) => {
  const x = localVethPair(t)
  const y = localVethPair(t)
  const run = netring(t, ['bridge', x.b, y.a, 'udp', 'dst', 'port', '7777'])
  await run.saw('bridging')
  using cap = Capture.open(y.b)
  const pass = Array.from({ length: 10 }, (_, i) => ipv4Frame(y.bMac, x.aMac, '10.99.0.1', '10.99.0.2', 17, udp(5000, 7777, Buffer.from(`pass ${i}`))))
  const stop = Array.from({ length: 10 }, (_, i) => ipv4Frame(y.bMac, x.aMac, '10.99.0.1', '10.99.0.2', 17, udp(5000, 7778, Buffer.from(`stop ${i}`))))
  await sendFrames(undefined, x.a, pass.flatMap((f, i) => [f, stop[i]]))
  const got = await collect(cap, Infinity, { timeoutMs: 2000, match: () => true })
  run.signal('SIGINT')
  const r = await run.done
  t.is(r.code, 0, r.stderr)
  t.deepEqual(
    got.map((p) => p.data),
    pass,
  )
  t.regex(r.stderr, /a->b: 10 forwarded/)
})

test('capture -r FILE EXPRESSION prints the packets of the file the expression accepts', async (t) => {
  const file = join(tempDir(t), 'read.pcapng')
  const traffic = mixedTraffic(Buffer.from('020000000001', 'hex'), Buffer.from('020000000002', 'hex'))
  const w = PcapWriter.open(file)
  traffic.forEach((data, i) => w.write({ data, timestamp: { sec: 1_700_000_000, nsec: i * 1000 }, originalLength: data.length, direction: 'host' } as never))
  w.close()
  const want = execFileSync('tcpdump', ['-n', '-r', file, 'udp dst port 7777 or vlan'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .split('\n')
    .filter((l) => /^\S/.test(l))
  const r = await netring(t, ['capture', '-r', file, '-tttt', 'udp', 'dst', 'port', '7777', 'or', 'vlan']).done
  t.is(r.code, 0, r.stderr)
  const lines = r.stdout.trim().split('\n')
  t.is(lines.length, want.length)
  t.is(lines.length, 24) // 8 to port 7777 and 16 tagged (`vlan` last: it shifts what follows it)
  t.true(lines.every((l) => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} In (vlan|IP 10\.99\.0\.1\.\d+ > 10\.99\.0\.2\.7777: UDP)/.test(l)), lines.join('\n'))
})

test('capture -r - reads the file from standard input (a pipe), as -r FILE does', async (t) => {
  const file = join(tempDir(t), 'stdin.pcapng')
  const traffic = mixedTraffic(Buffer.from('020000000001', 'hex'), Buffer.from('020000000002', 'hex'))
  // More than one read's worth (the reader reads 1 MiB at a time) so the pipe is read on, in order.
  const w = PcapWriter.open(file)
  for (let i = 0; i < 20_000; i++) {
    const data = traffic[i % traffic.length]
    w.write({ data, timestamp: { sec: 1_700_000_000, nsec: i * 1000 }, originalLength: data.length, direction: 'host' } as never)
  }
  w.close()
  // Bounds for a loaded machine (every file at once, one event loop per file): a hang still fails.
  const fromFile = await netring(t, ['capture', '-r', file, '-tttt'], { timeoutMs: 90_000 }).done
  t.is(fromFile.code, 0, fromFile.stderr)
  const { stdout: piped } = await execFileAsync('bash', ['-c', `set -o pipefail; cat ${JSON.stringify(file)} | ${JSON.stringify(CLI)} capture -r - -tttt`], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: 90_000,
  })
  t.is(piped.split('\n').length, 20_001)
  t.is(piped, fromFile.stdout)
})

test('a reader that goes away (| head) ends the command quietly', async (t) => {
  const file = join(tempDir(t), 'many.pcapng')
  const w = PcapWriter.open(file)
  const f = ipv4Frame(Buffer.alloc(6, 2), Buffer.alloc(6, 4), '10.0.0.1', '10.0.0.2', 17, udp(1, 2, Buffer.alloc(20)))
  for (let i = 0; i < 50_000; i++) w.write({ data: f, timestamp: { sec: 1, nsec: i }, originalLength: f.length, direction: 'host' } as never)
  w.close()
  const out = execFileSync('bash', ['-c', `set -o pipefail; ${JSON.stringify(CLI)} capture -r ${JSON.stringify(file)} | head -n 3`], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  })
  t.is(out.trim().split('\n').length, 3)
})

test('capture --workers 2 -c N -w FILE: every frame sent, exactly once, in one file tshark reads', async (t) => {
  const veth = vethPair(t)
  const traffic = mixedTraffic(veth.nearMac, veth.farMac)
  const file = join(tempDir(t), 'workers.pcapng')
  const run = netring(t, ['capture', '-i', veth.near, '--workers', '2', '-c', String(traffic.length), '-w', file])
  await run.saw('listening on')
  await veth.send(traffic)
  const r = await run.done
  t.is(r.code, 0, r.stderr)
  const key = (b: Buffer) => b.toString('hex')
  t.deepEqual(tsharkFrames(file).map((f) => key(f.bytes)).sort(), traffic.map(key).sort())
  t.regex(r.stderr, new RegExp(`^${traffic.length} packets captured$`, 'm'))
})

test('capture --workers 2 prints every packet once; Ctrl-C prints the totals over the workers', async (t) => {
  const veth = vethPair(t)
  const traffic = mixedTraffic(veth.nearMac, veth.farMac)
  const run = netring(t, ['capture', '-i', veth.near, '--workers', '2', '-n'])
  await run.saw('listening on')
  await veth.send(traffic)
  run.signal('SIGINT')
  const r = await run.done
  t.is(r.code, 0, r.stderr)
  const lines = r.stdout.trim().split('\n')
  const m = /^(\d+) packets captured$/m.exec(r.stderr)
  t.truthy(m, r.stderr)
  t.is(lines.length, Number(m![1]))
  t.regex(r.stderr, /^\d+ packets received by filter$/m)
  t.regex(r.stderr, /^\d+ packets dropped by kernel$/m)
})

test('capture --workers 0 or x: one error line, exit 1', async (t) => {
  for (const bad of ['0', 'x']) {
    const r = await netring(t, ['capture', '-i', 'lo', '--workers', bad]).done
    t.is(r.code, 1)
    t.regex(r.stderr.split('\n')[0], /^netring: --workers needs an integer of at least 1 or 'auto'/)
  }
})

/** A status line showing exactly `n` packets. */
const statusShowing = (n: number) => new RegExp(`\\r\\x1b\\[K${n} packets, `)

test('capture -w on a terminal: a live status line counts the packets and the file, and is erased before the summary', async (t) => {
  const veth = vethPair(t)
  const file = join(tempDir(t), 'status.pcap')
  const run = netring(t, ['capture', '-i', veth.near, '-w', file, '--format', 'pcap'], { terminal: true, timeoutMs: 60_000 })
  await run.saw('listening on')
  const traffic = mixedTraffic(veth.nearMac, veth.farMac)
  const half = traffic.length >> 1
  // Two rounds: the line follows the count as it grows, up to exactly what was sent.
  await veth.send(traffic.slice(0, half))
  await run.saw(statusShowing(half))
  await veth.send(traffic.slice(half))
  await run.saw(statusShowing(traffic.length))
  const size = statSync(file).size
  run.signal('SIGINT')
  const r = await run.done
  t.is(r.code, 0, r.stderr)
  t.is((await tsharkPayloads(file)).length, traffic.length)
  const lines = statusLines(r.stderr)
  const counts = lines.map((s) => s.packets)
  t.deepEqual(
    counts,
    [...counts].sort((a, b) => a - b),
    'the count never goes back',
  )
  t.true(counts.includes(half))
  t.true(lines.every((s) => s.drops === 0 && s.file !== undefined))
  // Everything was in the file (pcap has no end block), so the last line shows its size.
  t.is(lines.at(-1)!.file, `${(size / 1024).toFixed(0)} KiB`)
  t.is(size, statSync(file).size)
  // What the terminal shows at the end: the banner, the summary, no remnant of the status line.
  const shown = screen(r.stderr).filter((l) => l !== '' && l !== '^C')
  t.regex(shown[0], /^netring: listening on /)
  t.deepEqual(shown.slice(1), [`${traffic.length} packets captured`, `${traffic.length} packets received by filter`, '0 packets dropped by kernel'])
})

test('without a terminal there is no status line; printing to a terminal, none either', async (t) => {
  const veth = vethPair(t)
  const traffic = mixedTraffic(veth.nearMac, veth.farMac).slice(0, 20)
  const file = join(tempDir(t), 'quiet.pcapng')
  // stderr a pipe: nothing but the banner and the summary, even while running for seconds.
  const piped = netring(t, ['capture', '-i', veth.near, '-c', '20', '-w', file])
  // stdout and stderr on one terminal: packet lines only, a status line would cut into them.
  const printing = netring(t, ['capture', '-i', veth.near, '-n'], { terminal: true })
  await Promise.all([piped.saw('listening on'), printing.saw('listening on')])
  await veth.send(traffic.slice(0, 10))
  await printing.saw(/(?:[^\n]* In [^\n]*\n){10}/)
  await new Promise((r) => setTimeout(r, 2500)) // status lines would have been drawn twice
  await veth.send(traffic.slice(10))
  await printing.saw(/(?:[^\n]* In [^\n]*\n){20}/)
  printing.signal('SIGINT')
  const [a, b] = await Promise.all([piped.done, printing.done])
  t.is(a.code, 0, a.stderr)
  t.is(b.code, 0, b.stderr)
  for (const text of [a.stderr, b.stderr]) {
    t.notRegex(text, /\x1b|pps/)
    t.is(statusLines(text).length, 0)
  }
  t.regex(a.stderr, /^netring: listening on [^\n]*\n\n20 packets captured\n\d+ packets received by filter\n0 packets dropped by kernel\n$/)
  t.is(screen(b.stderr).filter((l) => / In /.test(l)).length, 20)
})

test('replay on a terminal: the status line counts the frames sent, and the receiver got that many', async (t) => {
  const link = localVethPair(t)
  const { file, frames } = replayFile(t, link)
  // At a small rate a block holds what came in its timeout: long timeouts and many blocks let
  // the ring hold a minute of this traffic, even while other tests block this event loop
  // (tshark runs synchronously); it is read while the command runs all the same.
  using cap = Capture.open(link.b, { blockSize: 256 * 1024, blockCount: 64, blockTimeoutMs: 1000 })
  const got: Buffer[] = []
  const stopReading = new AbortController()
  const reading = (async () => {
    try {
      for await (const batch of cap.batches({ signal: stopReading.signal })) {
        for (const p of batch) if (p.direction !== 'outgoing') got.push(p.copy().data)
      }
    } catch (e) {
      if ((e as Error).name !== 'AbortError') throw e
    }
  })()
  const run = netring(t, ['replay', '-i', link.a, file, '--pps', '100', '--loop', '100'], { terminal: true, timeoutMs: 60_000 })
  // Two status lines with a growing count, then Ctrl-C.
  await run.saw(/\r\x1b\[K[1-9]\d* packets, [^\r]*\r\x1b\[K[1-9]\d* packets, /)
  run.signal('SIGINT')
  const r = await run.done
  t.is(r.code, 0, r.stderr)
  const sent = Number(/Actual: (\d+) packets/.exec(r.stderr)?.[1])
  const lines = statusLines(r.stderr)
  t.true(lines.length >= 2)
  const counts = lines.map((s) => s.packets)
  t.true(counts[0] > 0 && counts.every((n, i) => i === 0 || n >= counts[i - 1]) && counts.at(-1)! <= sent, counts.join(' '))
  t.true(lines.every((s) => s.drops === 0 && s.file === undefined))
  for (let waited = 0; got.length < sent && waited < 10_000; waited += 50) await new Promise((r) => setTimeout(r, 50))
  stopReading.abort()
  await reading
  t.is(cap.stats().drops, 0)
  t.deepEqual(
    got,
    Array.from({ length: sent }, (_, i) => frames[i % frames.length]),
  )
  const shown = screen(r.stderr).filter((l) => l !== '' && l !== '^C')
  t.regex(shown[0], /^Actual: /)
  t.false(shown.some((l) => / pps, /.test(l)))
})

/** `n` distinct UDP frames of `size` bytes over 64 flows (so a hash fanout spreads them), numbered in their payload. */
function numberedFlows(dst: Buffer, src: Buffer, n: number, size: number, first = 0): Buffer[] {
  return Array.from({ length: n }, (_, k) => {
    const i = first + k
    const payload = Buffer.alloc(size - 42, i & 0xff)
    payload.writeUInt32BE(i)
    return ipv4Frame(dst, src, `10.99.${i % 64}.1`, '10.99.0.2', 17, udp(5000 + (i % 64), 7777, payload))
  })
}

/**
 * Length and UDP payload of every frame of `file` as tshark reads it, run without blocking this
 * process (other tests' children keep being served meanwhile).
 */
async function tsharkPayloads(file: string): Promise<string[]> {
  const { stdout } = await execFileAsync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.len', '-e', 'udp.payload'], {
    maxBuffer: 256 << 20,
    timeout: 60_000,
  })
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace('\t', ' '))
}

/** What `tsharkPayloads` gives for a frame sent. */
const payloadRow = (f: Buffer) => `${f.length} ${f.subarray(42).toString('hex')}`


/** The rotated files, every frame in them (each file read by tshark), and the summary's counts. */
async function rotatedFiles(dir: string, stderr: string) {
  const names = readdirSync(dir).sort((a, b) => a.length - b.length || a.localeCompare(b))
  const perFile: string[][] = []
  for (const name of names) perFile.push(await tsharkPayloads(join(dir, name)))
  const number = (re: RegExp) => Number(re.exec(stderr)?.[1])
  return {
    names,
    perFile,
    frames: perFile.flat(),
    captured: number(/^(\d+) packets captured$/m),
    received: number(/^(\d+) packets received by filter$/m),
    dropped: number(/^(\d+) packets dropped by kernel$/m),
  }
}

for (const workers of [[], ['--workers', '2']]) {
  const label = workers.join(' ') || 'one ring'
  test(`capture ${label} -C 1: files of 1 MB, each read by tshark, every packet once, as many as the kernel counted`, async (t) => {
    const veth = vethPair(t)
    const dir = tempDir(t)
    const run = netring(t, ['capture', '-i', veth.near, ...workers, '-w', join(dir, 'c.pcapng'), '-C', '1'], { timeoutMs: 90_000 })
    await run.saw('listening on')
    const sent = numberedFlows(veth.nearMac, veth.farMac, 3000, 1000)
    await veth.send(sent)
    // Ctrl-C once every packet is in the files.
    await filesHold(() => readdirSync(dir).map((name) => join(dir, name)), sent.length)
    run.signal('SIGINT')
    const r = await run.done
    t.is(r.code, 0, r.stderr)
    const got = await rotatedFiles(dir, r.stderr)
    t.deepEqual(got.names.slice(0, 3), ['c.pcapng', 'c.pcapng1', 'c.pcapng2'])
    t.true(got.names.length >= 3)
    // As tcpdump's -C: a file is closed once it holds 1 MB, so all but the last hold that and at
    // most one packet (a record of 1032 bytes) and the closing statistics block (52) more.
    for (const name of got.names.slice(0, -1)) {
      const size = statSync(join(dir, name)).size
      t.true(size >= 1_000_000 && size <= 1_000_000 + 1032 + 52, `${name}: ${size}`)
    }
    t.deepEqual([...got.frames].sort(), sent.map(payloadRow).sort())
    t.is(got.captured, sent.length)
    t.is(got.received, sent.length)
    t.is(got.dropped, 0)
  })

  test(`capture ${label} -G 1: a file per second, named by strftime, every packet once, as many as the kernel counted`, async (t) => {
    const veth = vethPair(t)
    const dir = tempDir(t)
    const run = netring(t, ['capture', '-i', veth.near, ...workers, '-w', join(dir, 'g-%s.pcapng'), '-G', '1'], { timeoutMs: 90_000 })
    await run.saw('listening on')
    // Three rounds more than a second apart: a packet after a second opens the next file.
    const rounds = [0, 1, 2].map((k) => numberedFlows(veth.nearMac, veth.farMac, 200, 200, k * 200))
    for (const [k, round] of rounds.entries()) {
      if (k > 0) await new Promise((r) => setTimeout(r, 1200))
      await veth.send(round)
    }
    const sent = rounds.flat()
    await filesHold(() => readdirSync(dir).map((name) => join(dir, name)), sent.length)
    run.signal('SIGINT')
    const r = await run.done
    t.is(r.code, 0, r.stderr)
    const got = await rotatedFiles(dir, r.stderr)
    // A file opens at the first packet after its second is up, as with tcpdump: the first may
    // be empty when the first packet came later than that.
    t.true(got.perFile.filter((f) => f.length > 0).length >= 3, got.names.join(' '))
    t.true(got.names.every((n) => /^g-\d{10}\.pcapng$/.test(n)), got.names.join(' '))
    t.deepEqual([...got.frames].sort(), sent.map(payloadRow).sort())
    t.is(got.captured, sent.length)
    t.is(got.received, sent.length)
    t.is(got.dropped, 0)
  })
}

test('capture --workers 2 prints the lines of all workers in time order, every packet once', async (t) => {
  const veth = vethPair(t)
  // 64 flows, so the hash fanout gives both workers packets, interleaved in time.
  const sent = numberedFlows(veth.nearMac, veth.farMac, 600, 100)
  const run = netring(t, ['capture', '-i', veth.near, '--workers', '2', '-n', '-tttt', '-c', String(sent.length)], { timeoutMs: 60_000 })
  await run.saw('listening on')
  // In rounds, so that several batches from each worker are in flight together.
  for (let i = 0; i < sent.length; i += 100) await veth.send(sent.slice(i, i + 100))
  const r = await run.done
  t.is(r.code, 0, r.stderr)
  const lines = r.stdout.trim().split('\n')
  t.is(lines.length, sent.length)
  // `YYYY-MM-DD HH:MM:SS.uuuuuu`: text order is time order.
  const times = lines.map((l) => l.slice(0, 26))
  const backwards = times.findIndex((time, i) => i > 0 && time < times[i - 1])
  t.is(backwards, -1, `line ${backwards}: ${lines[backwards - 1]} then ${lines[backwards]}`)
  // Every packet once: source address and port name the flow, the sender's order numbers them.
  const flows = lines.map((l) => /IP (10\.99\.\d+\.1\.\d+) > /.exec(l)?.[1])
  const want = sent.map((_, i) => `10.99.${i % 64}.1.${5000 + (i % 64)}`)
  t.deepEqual([...flows].sort(), [...want].sort())
})

test('a full disk: one ENOSPC line, exit 1, and the file ends at the last complete write (tshark reads it without error)', async (t) => {
  const dir = tempDir(t)
  // A small tmpfs of our own fills after a few hundred frames.
  sh('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir])
  t.teardown(() => sh('umount', ['-l', dir]))
  for (const format of ['pcapng', 'pcap']) {
    const veth = vethPair(t)
    const file = join(dir, `full.${format}`)
    // Generous for a loaded machine: the frames go a few at a time.
    const run = netring(t, ['capture', '-i', veth.near, '--format', format, '-w', file], { timeoutMs: 90_000 })
    await run.saw('listening on')
    // 1,000 frames of 333 bytes are more than 256 KiB; a few at a time, until the command stops.
    let sent = 0
    const finished = run.done.then(() => true)
    while (sent < 5_000 && !(await Promise.race([finished, new Promise<false>((r) => setTimeout(() => r(false), 20))]))) {
      await veth.send(numberedFlows(veth.nearMac, veth.farMac, 100, 333, sent))
      sent += 100
    }
    const r = await run.done
    t.is(r.code, 1, r.stderr)
    t.is(r.signal, null)
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('netring: ') && !l.includes('listening on'))
    t.is(errors.length, 1, r.stderr)
    t.regex(errors[0], /No space left on device \(ENOSPC\)/)
    t.notRegex(r.stderr, /^\s+at /m, 'no stack trace')
    const frames = tsharkFrames(file)
    t.true(frames.length > 0, format)
    rmSync(file)
  }
})

test('capture -w - | head -c 100: the reader going away ends the command quietly, exit 0', async (t) => {
  const veth = vethPair(t)
  const child = spawn('bash', ['-c', `set -o pipefail; ${shellQuote(CLI)} capture -i ${veth.near} -w - | head -c 100 >/dev/null`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  const done = new Promise<number | null>((resolve) => child.once('close', resolve))
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  t.teardown(() => {
    clearTimeout(killer)
    child.kill('SIGKILL')
  })
  child.stderr!.on('data', (d) => (stderr += d))
  for (let waited = 0; !stderr.includes('listening on') && waited < 20_000; waited += 50) await new Promise((r) => setTimeout(r, 50))
  // Until the pipe breaks (the first write after head exits sees EPIPE).
  const exited = done.then(() => true)
  for (let i = 0; i < 50 && !(await Promise.race([exited, new Promise<false>((r) => setTimeout(() => r(false), 50))])); i++) {
    await veth.send(numberedFlows(veth.nearMac, veth.farMac, 20, 200, i * 20))
  }
  t.is(await done, 0, stderr)
  t.notRegex(stderr, /EPIPE|Broken pipe|failed/, stderr)
  t.notRegex(stderr, /^\s+at /m, 'no stack trace')
})

test('replay --pps or --speed too small to schedule a frame: one usage line, exit 1, no stack', async (t) => {
  const link = localVethPair(t)
  const { file } = replayFile(t, link)
  for (const [flag, value] of [
    ['--pps', '1e-300'],
    ['--speed', '1e-320'],
  ]) {
    const r = await netring(t, ['replay', '-i', link.a, file, flag, value]).done
    t.is(r.code, 1, r.stderr)
    t.is(r.signal, null)
    t.regex(r.stderr.split('\n')[0], new RegExp(`^netring: ${flag} `))
    t.notRegex(r.stderr, /RangeError|Warning| at /, r.stderr)
  }
})

test('replay: Ctrl-C while waiting for the next frame ends at once with the summary', async (t) => {
  const link = localVethPair(t)
  const { file } = replayFile(t, link)
  // One frame every 1,000 s: the command sends the first, then waits; the run is killed (and
  // the test fails) long before the second is due.
  const run = netring(t, ['replay', '-i', link.a, file, '--pps', '0.001'], { terminal: true, timeoutMs: 30_000 })
  await run.saw(/\r\x1b\[K1 packets, /)
  run.signal('SIGINT')
  const r = await run.done
  t.is(r.signal, null)
  t.is(r.code, 0, r.stderr)
  t.regex(r.stderr, /Actual: 1 packets/)
})
