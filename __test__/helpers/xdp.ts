// Frames of every kind for the AF_XDP tests, all from one source MAC so a test recognises its
// own frames among whatever else crosses the link, and a reader that collects them.

import { type ChildProcess, spawn } from 'node:child_process'

import type { ExecutionContext } from 'ava'
import type { OwnedXdpPacket, XdpSocket } from 'netring'

import { frame, namespace, sh, sleep, tagged, udpFrame } from './net'

/** The source MAC of every test frame (locally administered, nobody's). */
export const XDP_TEST_SRC = Buffer.from('026e72000001', 'hex')

export const fromTest = (data: Buffer) => data.length >= 12 && data.subarray(6, 12).equals(XDP_TEST_SRC)

/** Frames of sizes 60 to 1514, 802.1Q-tagged, ARP, IPv4/UDP and IPv6, each carrying `seq` somewhere unique. */
export function mixedFrames(dst: Buffer, count: number): Buffer[] {
  const sizes = [60, 64, 100, 512, 1000, 1400, 1514]
  return Array.from({ length: count }, (_, i) => {
    switch (i % 5) {
      case 0:
        return frame(dst, XDP_TEST_SRC, sizes[i % sizes.length], i)
      case 1:
        return tagged(frame(dst, XDP_TEST_SRC, sizes[(i * 3) % sizes.length] - 4, i), 100 + (i % 7))
      case 2: {
        const arp = Buffer.alloc(60)
        dst.copy(arp, 0)
        XDP_TEST_SRC.copy(arp, 6)
        arp.writeUInt16BE(0x0806, 12)
        Buffer.from('0001080006040001', 'hex').copy(arp, 14)
        XDP_TEST_SRC.copy(arp, 22)
        arp.writeUInt32BE(0x0a630001, 28)
        arp.writeUInt32BE(i, 38)
        return arp
      }
      case 3: {
        const payload = Buffer.alloc(18 + (i % 400))
        payload.writeUInt32BE(i)
        return udpFrame(dst, XDP_TEST_SRC, 40000, 40001, payload)
      }
      default: {
        const ip6 = Buffer.alloc(40 + 8 + (i % 300))
        ip6[0] = 0x60
        ip6.writeUInt16BE(ip6.length - 40, 4)
        ip6[6] = 59 // no next header
        ip6[7] = 64
        ip6.writeUInt32BE(i, 40)
        const eth = Buffer.alloc(14)
        dst.copy(eth, 0)
        XDP_TEST_SRC.copy(eth, 6)
        eth.writeUInt16BE(0x86dd, 12)
        return Buffer.concat([eth, ip6])
      }
    }
  })
}

/** Owned copies of the test's frames received on `xsk`, until `want` arrived or `timeoutMs` passed. */
export async function collectXdp(xsk: XdpSocket, want: number, timeoutMs = 10_000): Promise<OwnedXdpPacket[]> {
  const got: OwnedXdpPacket[] = []
  try {
    for await (const batch of xsk.batches({ signal: AbortSignal.timeout(timeoutMs) })) {
      for (const p of batch) if (fromTest(p.data)) got.push(p.copy())
      if (got.length >= want) break
    }
  } catch (e) {
    if ((e as Error).name !== 'AbortError') throw e
  }
  return got
}

/** The XDP program attached to `dev` (in `ns`), as `ip -d link` shows it, or undefined. */
export function xdpProgramOf(show: string): string | undefined {
  return /prog\/xdp id (\d+)/.exec(show)?.[1]
}

let pairs = 0

/**
 * A veth pair with `queues` RX and TX queues on the near end and `farQueues` on the far end (in a
 * fresh namespace), IPv6 off; removed with the namespace when the test ends. A veth records the
 * sender's TX queue as the receiver's RX queue, so a far end with one queue puts every frame on
 * near queue 0.
 */
export function multiQueueVeth(t: ExecutionContext, queues: number, farQueues = queues): { near: string; far: string; ns: string; farMac: Buffer; nearMac: Buffer } {
  const ns = namespace(t)
  const id = `${process.pid.toString(36)}q${(pairs++).toString(36)}`
  const near = `nq${id}a`
  const far = `nq${id}b`
  const [q, fq] = [String(queues), String(farQueues)]
  sh('ip', ['link', 'add', near, 'numtxqueues', q, 'numrxqueues', q, 'type', 'veth', 'peer', 'name', far, 'numtxqueues', fq, 'numrxqueues', fq, 'netns', ns])
  t.teardown(() => {
    try {
      sh('ip', ['link', 'del', near])
    } catch {
      // gone with the namespace
    }
  })
  sh('sysctl', ['-qw', `net.ipv6.conf.${near}.disable_ipv6=1`])
  sh('ip', ['link', 'set', near, 'up'])
  sh('ip', ['-n', ns, 'link', 'set', far, 'up'])
  const mac = (json: string) => Buffer.from((JSON.parse(json)[0].address as string).replaceAll(':', ''), 'hex')
  return { near, far, ns, nearMac: mac(sh('ip', ['-j', 'link', 'show', near])), farMac: mac(sh('ip', ['-n', ns, '-j', 'link', 'show', far])) }
}

/** The id of the XDP program attached to `dev` in this namespace, or undefined. */
export function attachedProgram(dev: string): string | undefined {
  return xdpProgramOf(sh('ip', ['-d', 'link', 'show', dev]))
}

/** Waits (up to `timeoutMs`) until `condition()` holds; returns whether it did. */
export async function eventually(condition: () => boolean, timeoutMs = 10_000): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (condition()) return true
    await sleep(20)
  }
  return condition()
}

/** A child node process running `script` (CommonJS, `netring` resolvable); resolves once it prints `ready`. */
export async function childWith(script: string): Promise<{ child: ChildProcess; line: string; exited: Promise<{ code: number | null; signal: string | null }> }> {
  const child = spawn(process.execPath, ['-e', script], { cwd: new URL('../..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 })
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  let out = ''
  let err = ''
  child.stderr!.on('data', (d) => (err += d))
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d
      const m = /^ready(.*)$/m.exec(out)
      if (m) resolve(m[1].trim())
    })
    void exited.then(({ code, signal }) => reject(new Error(`child exited (${code ?? signal}) before it was ready: ${out}${err}`)))
  })
  return { child, line, exited }
}
