// Test networks: private namespaces and veth pairs with unique names, and a sender that writes
// raw frames from the far side. Everything created here is removed in the test's teardown, and
// again at process exit in case a test run dies half-way.

import { execFileSync, spawn } from 'node:child_process'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import type { ExecutionContext } from 'ava'

if (process.getuid?.() !== 0) {
  throw new Error('the netring test suite opens packet sockets and creates namespaces: run it as root (sudo npm test)')
}

const created = new Set<string>()
const createdLinks = new Set<string>()
let counter = 0
const unique = () => `${process.pid.toString(36)}${(counter++).toString(36)}`

function removeEverything(): void {
  for (const link of createdLinks) {
    try {
      execFileSync('ip', ['link', 'del', link], { stdio: 'ignore' })
    } catch {
      // already gone
    }
  }
  for (const ns of created) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
    } catch {
      // already gone
    }
  }
}
process.on('exit', removeEverything)
// A run that is interrupted or times out must not leave namespaces behind either.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    removeEverything()
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15))
  })
}

export function sh(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

export interface VethPair {
  /** Our end, in this process's namespace: capture here. */
  near: string
  nearMac: Buffer
  nearIndex: number
  /** The far end, inside `ns`: traffic is sent from here. */
  far: string
  farMac: Buffer
  ns: string
  /** Writes raw Ethernet frames on the far end, in order. */
  send(frames: Buffer[]): Promise<void>
  remove(): void
}

function macOf(iface: string, ns?: string): Buffer {
  const json = ns ? sh('ip', ['-n', ns, '-j', 'link', 'show', iface]) : sh('ip', ['-j', 'link', 'show', iface])
  return Buffer.from((JSON.parse(json)[0].address as string).replaceAll(':', ''), 'hex')
}

/**
 * A veth pair with its far end in a fresh namespace (or in `ns`, one of the test's own, to
 * have several far ends in one namespace); removed when the test ends.
 */
export function vethPair(t: ExecutionContext, options: { mtu?: number; ns?: string } = {}): VethPair {
  const id = unique()
  const ns = options.ns ?? `netring-t-${id}`
  const near = `nt${id}a`
  const far = `nt${id}b`
  const ownNs = options.ns === undefined
  if (ownNs) {
    sh('ip', ['netns', 'add', ns])
    created.add(ns)
  }
  const remove = () => {
    if (ownNs ? !created.delete(ns) : !created.has(ns)) return
    try {
      sh('ip', ['link', 'del', near])
    } catch {
      // deleted with the namespace's end, or by the test itself
    }
    if (ownNs) sh('ip', ['netns', 'del', ns])
  }
  t.teardown(remove)
  // One queue each keeps ordering simple; IPv6 off keeps the link silent (no router
  // solicitations or DAD in the middle of a byte-for-byte comparison).
  sh('ip', ['link', 'add', near, 'numtxqueues', '1', 'numrxqueues', '1', 'type', 'veth', 'peer', 'name', far, 'numtxqueues', '1', 'numrxqueues', '1', 'netns', ns])
  sh('sysctl', ['-qw', `net.ipv6.conf.${near}.disable_ipv6=1`])
  sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${far}.disable_ipv6=1`])
  if (options.mtu) {
    sh('ip', ['link', 'set', near, 'mtu', String(options.mtu)])
    sh('ip', ['-n', ns, 'link', 'set', far, 'mtu', String(options.mtu)])
  }
  sh('ip', ['link', 'set', near, 'up'])
  sh('ip', ['-n', ns, 'link', 'set', far, 'up'])
  const nearIndex = Number(readFileSync(`/sys/class/net/${near}/ifindex`, 'utf8'))
  return {
    near,
    nearMac: macOf(near),
    nearIndex,
    far,
    farMac: macOf(far, ns),
    ns,
    send: (frames) => sendFrames(ns, far, frames),
    remove,
  }
}

export interface LocalVethPair {
  /** Send here. */
  a: string
  aMac: Buffer
  /** Receive here (in this namespace too, so a Capture can open it). */
  b: string
  bMac: Buffer
  bIndex: number
  remove(): void
}

/** A veth pair with both ends in this process's namespace; removed when the test ends. */
export function localVethPair(t: ExecutionContext, options: { mtu?: number } = {}): LocalVethPair {
  const id = unique()
  const a = `nl${id}a`
  const b = `nl${id}b`
  sh('ip', ['link', 'add', a, 'numtxqueues', '1', 'numrxqueues', '1', 'type', 'veth', 'peer', 'name', b, 'numtxqueues', '1', 'numrxqueues', '1'])
  createdLinks.add(a)
  const remove = () => {
    if (!createdLinks.delete(a)) return
    try {
      sh('ip', ['link', 'del', a])
    } catch {
      // deleted by the test itself
    }
  }
  t.teardown(remove)
  for (const dev of [a, b]) {
    sh('sysctl', ['-qw', `net.ipv6.conf.${dev}.disable_ipv6=1`])
    if (options.mtu) sh('ip', ['link', 'set', dev, 'mtu', String(options.mtu)])
    sh('ip', ['link', 'set', dev, 'up'])
  }
  return {
    a,
    aMac: macOf(a),
    b,
    bMac: macOf(b),
    bIndex: Number(readFileSync(`/sys/class/net/${b}/ifindex`, 'utf8')),
    remove,
  }
}

/** A namespace of its own, removed when the test ends. */
export function namespace(t: ExecutionContext): string {
  const ns = `netring-t-${unique()}`
  sh('ip', ['netns', 'add', ns])
  created.add(ns)
  t.teardown(() => {
    if (created.delete(ns)) sh('ip', ['netns', 'del', ns])
  })
  sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1'])
  sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  return ns
}

/** Runs a command in `ns` without blocking the event loop; resolves with its stdout. */
export function runIn(ns: string, command: string[], timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...command], { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('error', reject)
    // 'close', not 'exit': 'exit' may come before the last of stdout was read (seen as an empty
    // answer from a client that had printed one, on a loaded machine).
    child.on('close', (code, signal) =>
      code === 0 ? resolve(out) : reject(new Error(`${command.join(' ')} in ${ns} failed (${code ?? signal}): ${err}`)),
    )
  })
}

// The far side's sender: a raw AF_PACKET socket in the namespace, fed frames over stdin.
const SENDER = `
import socket, sys, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
data = sys.stdin.buffer.read()
off = 0
while off < len(data):
    (n,) = struct.unpack_from('<I', data, off)
    off += 4
    s.send(data[off:off + n])
    off += n
`

/** Sends frames out of `iface` in namespace `ns` (or in ours when `ns` is undefined), in order. */
export function sendFrames(ns: string | undefined, iface: string, frames: Buffer[]): Promise<void> {
  const parts: Buffer[] = []
  for (const f of frames) {
    const len = Buffer.alloc(4)
    len.writeUInt32LE(f.length)
    parts.push(len, f)
  }
  const [command, args] = ns ? ['ip', ['netns', 'exec', ns, 'python3', '-c', SENDER, iface]] : ['python3', ['-c', SENDER, iface]]
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'ignore', 'pipe'], timeout: 30_000 })
    let stderr = ''
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`sender failed (${code ?? signal}): ${stderr}`)),
    )
    child.stdin.end(Buffer.concat(parts))
  })
}

// ---- frames ----

export const BROADCAST = Buffer.from('ffffffffffff', 'hex')
/** An IPv4 multicast MAC (224.0.0.251). */
export const MULTICAST = Buffer.from('01005e0000fb', 'hex')
/** A unicast MAC that is nobody's. */
export const OTHER_HOST = Buffer.from('020000abcdef', 'hex')
/** An ethertype reserved for local experiments (IEEE 802 local experimental 1). */
export const ETH_P_EXPERIMENTAL = 0x88b5

/** An Ethernet frame of exactly `size` bytes whose payload starts with `seq`. */
export function frame(dst: Buffer, src: Buffer, size: number, seq: number, ethertype = ETH_P_EXPERIMENTAL): Buffer {
  const f = Buffer.alloc(size)
  dst.copy(f, 0)
  src.copy(f, 6)
  f.writeUInt16BE(ethertype, 12)
  f.writeUInt32BE(seq, 14)
  for (let i = 18; i < size; i++) f[i] = (i * 7 + seq) & 0xff
  return f
}

/** The same frame with an 802.1Q tag after the source address. */
export function tagged(f: Buffer, tci: number, tpid = 0x8100): Buffer {
  const tag = Buffer.alloc(4)
  tag.writeUInt16BE(tpid, 0)
  tag.writeUInt16BE(tci, 2)
  return Buffer.concat([f.subarray(0, 12), tag, f.subarray(12)])
}

/** An Ethernet + IPv4 + UDP frame. */
export function udpFrame(dst: Buffer, src: Buffer, srcPort: number, dstPort: number, payload: Buffer): Buffer {
  const ip = Buffer.alloc(20)
  ip[0] = 0x45
  ip.writeUInt16BE(20 + 8 + payload.length, 2)
  ip[8] = 64
  ip[9] = 17
  Buffer.from([10, 99, 0, 1]).copy(ip, 12)
  Buffer.from([10, 99, 0, 2]).copy(ip, 16)
  let sum = 0
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  ip.writeUInt16BE(~sum & 0xffff, 10)
  const udp = Buffer.alloc(8)
  udp.writeUInt16BE(srcPort, 0)
  udp.writeUInt16BE(dstPort, 2)
  udp.writeUInt16BE(8 + payload.length, 4)
  const eth = Buffer.alloc(14)
  dst.copy(eth, 0)
  src.copy(eth, 6)
  eth.writeUInt16BE(0x0800, 12)
  return Buffer.concat([eth, ip, udp, payload])
}

/** A classic BPF program for a tcpdump expression, as `tcpdump -dd` prints it. */
export function tcpdumpDd(expression: string): string {
  return sh('tcpdump', ['-i', 'lo', '-dd', expression])
}

/** Open file descriptors of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Packet sockets this process has open (other test processes may have their own). */
export function ownPacketSockets(): number {
  const inodes = new Set(
    readFileSync('/proc/net/packet', 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/).at(-1)),
  )
  let count = 0
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))
      if (m && inodes.has(m[1])) count++
    } catch {
      // closed while we looked
    }
  }
  return count
}
