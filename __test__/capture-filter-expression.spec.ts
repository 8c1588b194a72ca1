// String filters are pcap-filter expressions compiled by the system's libpcap: the program is
// the one tcpdump prints, and on live traffic a capture gets exactly what tcpdump gets.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'
import { Capture, compileFilter, FilterProgram, NetringError, PcapWriter, type BpfInstruction } from 'netring'

import { FILTER_CORPUS } from './fixtures/filter-corpus'
import { collect } from './helpers/collect'
import { tcpdumpDd, udpFrame, vethPair } from './helpers/net'
import { readPcap, tcpdump } from './helpers/pcap'
import { mixedTraffic } from './helpers/traffic'

/** `tcpdump -dd -s <snapLen>` without an interface compiles for Ethernet, as netring does. */
function tcpdumpProgram(expression: string, snapLen: number): BpfInstruction[] {
  const text = execFileSync('tcpdump', ['-dd', '-s', String(snapLen), expression], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  })
  return [...text.matchAll(/\{([^}]*)\}/g)].map((m) => {
    const [code, jt, jf, k] = m[1].split(',').map((n) => Number(n.trim()))
    return { code, jt, jf, k }
  })
}

test(`the compiled program equals tcpdump -dd for ${FILTER_CORPUS.length} expressions and two snap lengths`, (t) => {
  t.true(FILTER_CORPUS.length >= 50)
  for (const expression of FILTER_CORPUS) {
    for (const snapLen of [262144, 96]) {
      const want = tcpdumpProgram(expression, snapLen)
      t.true(want.length > 1, `tcpdump compiled ${expression}`)
      t.deepEqual(compileFilter(expression, snapLen), want, `${expression} -s ${snapLen}`)
    }
  }
  t.deepEqual(compileFilter('udp'), tcpdumpProgram('udp', 262144), 'the default snap length is tcpdump’s')
})

test('a bad expression is EINVAL with libpcap’s message and option filter', (t) => {
  for (const bad of ['tcp port', 'host 999.1.1.1', 'portrange 10-', 'frobnicate']) {
    const e = t.throws(() => Capture.open('lo', { filter: bad }), { instanceOf: NetringError })
    t.is(e.code, 'EINVAL', bad)
    t.is(e.option, 'filter')
    t.is(e.syscall, 'pcap_compile')
    t.true(e.message.includes(bad), e.message)
    t.truthy(e.hint)
    t.throws(() => compileFilter(bad), { instanceOf: NetringError, code: 'EINVAL' })
  }
  const syntax = t.throws(() => compileFilter('tcp port'), { instanceOf: NetringError })
  t.regex(syntax.message, /syntax error/)
})

// `vlan` is left out of the live comparison: tcpdump compiles it on a live Linux handle with a
// test of the kernel's VLAN metadata, while an expression compiled for Ethernet (as netring
// and `tcpdump -dd` do) looks for the tag in the frame, where the kernel has removed it.
const LIVE = [
  'udp dst port 7777',
  'tcp port 443 and not host 10.0.0.1',
  'icmp[icmptype] == icmp-echo',
  'ip6',
  'net 10.0.0.0/8 and (tcp or udp)',
  'portrange 5000-5003',
  'len <= 100',
  'not ip and not arp',
  'tcp[tcpflags] & (tcp-syn|tcp-fin) != 0',
  'ip',
]

for (const expression of LIVE) {
  test(`live: netring gets exactly what tcpdump gets for '${expression}'`, async (t) => {
    const veth = vethPair(t)
    const oracle = await tcpdump(t, veth.near, expression)
    using cap = Capture.open(veth.near, { filter: expression })
    const traffic = mixedTraffic(veth.nearMac, veth.farMac)
    await veth.send(traffic)
    // Wait a while beyond the last packet: a packet the filter should have rejected would show.
    const got = (await collect(cap, Infinity, { timeoutMs: 1500, match: () => true })).map((p) => p.data)
    const want = await oracle.stop(got.length)
    t.true(want.length > 0 && want.length < traffic.length, `the expression picks some: ${want.length} of ${traffic.length}`)
    t.deepEqual(got, want)
  })
}

test('without libpcap a string filter names the package, and everything else works', (t) => {
  const script = `
    const { Capture, libpcapAvailable } = require(${JSON.stringify(process.cwd())})
    const out = { available: libpcapAvailable() }
    try { Capture.open('lo', { filter: 'udp' }) } catch (e) {
      out.error = { name: e.name, code: e.code, option: e.option, syscall: e.syscall, hint: e.hint, message: e.message }
    }
    const cap = Capture.open('lo', { filter: ${JSON.stringify(tcpdumpDd('udp'))} })
    out.programTextWorks = cap.info.interface === 'lo'
    cap.close()
    console.log(JSON.stringify(out))`
  const out = JSON.parse(
    execFileSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      env: { ...process.env, NETRING_LIBPCAP: '/nonexistent/libpcap.so.0.8' },
      timeout: 20_000,
    }),
  )
  t.false(out.available)
  t.is(out.error.name, 'NetringError')
  t.is(out.error.code, 'ENOENT')
  t.is(out.error.option, 'filter')
  t.is(out.error.syscall, 'dlopen')
  t.regex(out.error.hint, /libpcap0\.8/)
  t.true(out.programTextWorks)
})

const port = (veth: ReturnType<typeof vethPair>, dport: number, n: number, tag: string) =>
  Array.from({ length: n }, (_, i) => udpFrame(veth.nearMac, veth.farMac, 5000, dport, Buffer.from(`${tag} ${i}`)))

for (const form of ['expression', 'tcpdump -dd text', 'instruction array'] as const) {
  test(`setFilter (${form}) filters what is already in the ring and everything after`, async (t) => {
    const veth = vethPair(t)
    using cap = Capture.open(veth.near, { filter: 'udp' })
    const before7777 = port(veth, 7777, 20, 'old')
    const before7778 = port(veth, 7778, 20, 'old')
    await veth.send(before7777.flatMap((f, i) => [f, before7778[i]]))
    // Nothing read yet: the old filter's packets sit in the ring.
    const expression = 'udp dst port 7778'
    const filter =
      form === 'expression' ? expression : form === 'tcpdump -dd text' ? tcpdumpDd(expression) : compileFilter(expression)
    cap.setFilter(filter)
    const after7777 = port(veth, 7777, 10, 'new')
    const after7778 = port(veth, 7778, 10, 'new')
    await veth.send(after7777.flatMap((f, i) => [f, after7778[i]]))
    const got = await collect(cap, Infinity, { timeoutMs: 1500, match: () => true })
    // Filtered with the new program, not discarded: the old 7778 packets still arrive.
    t.deepEqual(
      got.map((p) => p.data),
      [...before7778, ...after7778],
    )
    cap.setFilter(null)
    const all = port(veth, 9, 5, 'any')
    await veth.send(all)
    t.deepEqual(
      (await collect(cap, 5, { match: () => true })).map((p) => p.data),
      all,
    )
  })
}

test('setFilter with a bad filter throws and keeps the filter it had', async (t) => {
  const veth = vethPair(t)
  using cap = Capture.open(veth.near, { filter: 'udp dst port 7777' })
  t.throws(() => cap.setFilter('udp dst port'), { instanceOf: NetringError, code: 'EINVAL' })
  t.throws(() => cap.setFilter(42 as never), { instanceOf: NetringError, code: 'EINVAL' })
  const want = port(veth, 7777, 5, 'kept')
  await veth.send([...port(veth, 7778, 5, 'no'), ...want])
  t.deepEqual(
    (await collect(cap, Infinity, { timeoutMs: 1000, match: () => true })).map((p) => p.data),
    want,
  )
  cap.close()
  t.throws(() => cap.setFilter('udp'), { instanceOf: NetringError, code: 'EBADF' })
})

test('FilterProgram in user space accepts exactly what tcpdump -r accepts from a file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'netring-userfilter-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const mac = Buffer.from('020000000001', 'hex')
  const traffic = mixedTraffic(mac, Buffer.from('020000000002', 'hex'))
  const file = join(dir, 'mixed.pcap')
  const w = PcapWriter.open(file, { format: 'pcap' })
  traffic.forEach((data, i) => w.write({ data, timestamp: { sec: 1, nsec: i * 1000 }, originalLength: data.length, direction: 'host' } as never))
  w.close()
  for (const expression of [...LIVE, 'vlan', 'vlan 100 and udp', 'icmp6', 'arp']) {
    const out = join(dir, 'out.pcap')
    execFileSync('tcpdump', ['-r', file, '-w', out, expression], { stdio: 'ignore' })
    const want = readPcap(readFileSync(out))
    const program = new FilterProgram(expression)
    t.true(want.length > 0, expression)
    t.deepEqual(
      traffic.filter((data) => program.matches({ data, originalLength: data.length })),
      want,
      expression,
    )
  }
  t.throws(() => new FilterProgram('tcp port'), { instanceOf: NetringError, code: 'EINVAL' })
})
