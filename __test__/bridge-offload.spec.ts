// The bridge between hosts with their default offloads (no ethtool anywhere): their stacks hand
// the veth TCP frames with partial checksums and GSO frames up to 64 KiB. Forwarded with their
// offload metadata they arrive checksummed and segmented; forwarded without it (offload: false,
// on purpose) TCP does not get through, which shows what the metadata is for.
// Serial: each test's bridge shares this process's event loop, and a bridge under a 10 MB
// transfer keeps it busy.

import { createHash } from 'node:crypto'

import test from 'ava'
import { Bridge, Capture, type BridgeCallback, type BridgeDirectionStats } from 'netring'

import { HASHING_CLIENT, HASHING_SERVER, PING, python, twoHosts, UDP_ECHO_ALL, UDP_SIZES, type Host } from './helpers/hosts'
import { runIn } from './helpers/net'

const MB = 1 << 20

/** Sends `size` bytes from `from` to `to` over TCP; resolves with the client's report. */
async function transfer(
  from: Host,
  to: Host,
  size: number,
  options: { ipv6?: boolean; fill?: number; port?: number; connectSeconds?: number } = {},
) {
  const ip = options.ipv6 ? to.ip6 : to.ip
  const port = String(options.port ?? 5000)
  const connect = options.connectSeconds ?? 10
  const server = runIn(to.ns, python(HASHING_SERVER, ip, port, String(connect + 2)), 60_000)
  const extra = options.fill === undefined ? [] : [String(options.fill)]
  const client = await runIn(from.ns, python(HASHING_CLIENT, ip, port, String(size), String(connect), ...extra), 60_000).catch(
    async (e: unknown) => {
      await server.catch(() => undefined)
      throw e
    },
  )
  if (client.trim() === 'unreachable') {
    // Nothing connected: the server times out by itself.
    await server.catch(() => undefined)
    return { reachable: false, received: '', sent: '', mss: 0 }
  }
  await server
  const [received, sent, mss] = client.trim().split(' | ')
  return { reachable: true, received, sent, mss: Number(mss.split(' ')[1]) }
}

function accounted(t: import('ava').ExecutionContext, stats: Record<string, BridgeDirectionStats>, calls: Record<string, number>) {
  for (const d of ['a->b', 'b->a'] as const) {
    const s = stats[d]
    t.is(s.forwarded + s.droppedByCallback + s.droppedTooLarge + s.droppedRingFull + s.droppedRejected, calls[d], `${d}: every packet accounted for`)
    t.is(s.droppedRejected, 0, `${d}: nothing refused`)
  }
}

/** Runs the bridge with `fn` (forward everything by default) until `body` is done. */
async function bridged(net: { a: string; b: string }, body: () => Promise<void>, options: { offload?: boolean; fn?: BridgeCallback } = {}) {
  await using bridge = Bridge.open({ a: net.a, b: net.b, offload: options.offload })
  const controller = new AbortController()
  const calls: Record<string, number> = { 'a->b': 0, 'b->a': 0 }
  const fn = options.fn ?? (() => 'forward')
  const running = bridge.run(
    (p, d) => {
      calls[d]++
      return fn(p, d)
    },
    { signal: controller.signal },
  )
  try {
    await body()
  } finally {
    controller.abort()
  }
  return { stats: await running, calls }
}

test.serial('10 MB of TCP each way, at the same time, arrive hash-exact', async (t) => {
  const net = twoHosts(t)
  const { stats, calls } = await bridged(net, async () => {
    const [ab, ba] = await Promise.all([
      transfer(net.left, net.right, 10 * MB),
      transfer(net.right, net.left, 10 * MB, { port: 5002 }),
    ])
    for (const r of [ab, ba]) {
      t.true(r.reachable)
      t.is(r.received, r.sent, 'the server hashed exactly what the client sent')
    }
  })
  accounted(t, stats, calls)
})

test.serial('UDP from 1 to 8,000 bytes (IP fragments) both ways, and ping', async (t) => {
  const net = twoHosts(t)
  const sizes = ['1', '2', '100', '1000', '1472', '1473', '1500', '3000', '5000', '8000']
  const { stats, calls } = await bridged(net, async () => {
    const echo = runIn(net.right.ns, python(UDP_ECHO_ALL, net.right.ip, '8'), 30_000)
    const reply = await runIn(net.left.ns, python(UDP_SIZES, net.right.ip, '20', ...sizes), 30_000)
    t.is(reply.trim(), `ok ${sizes.join(' ')}`, 'each datagram went a->b and came back b->a intact')
    await echo
    const pong = await runIn(net.left.ns, python(PING, net.right.ip, '3', '10'), 20_000)
    t.is(pong.trim(), 'replies 3', 'ICMP echo requests went a->b and their replies came back')
  })
  accounted(t, stats, calls)
})

test.serial('TCP over IPv6 arrives hash-exact', async (t) => {
  const net = twoHosts(t, { ipv6: true })
  await bridged(net, async () => {
    const r = await transfer(net.left, net.right, 4 * MB, { ipv6: true })
    t.true(r.reachable)
    t.is(r.received, r.sent)
  })
})

test.serial('a callback that rewrites TCP payload bytes still delivers (checksums redone)', async (t) => {
  const net = twoHosts(t)
  const a = 0x61
  const b = 0x62
  let rewritten = 0
  const { stats } = await bridged(net, async () => {
    const r = await transfer(net.left, net.right, 2 * MB, { fill: a })
    t.true(r.reachable)
    // The server got only 'b's: every payload byte was rewritten on the way, and accepted.
    const expected = createHash('sha256').update(Buffer.alloc(2 * MB, b)).digest('hex')
    t.is(r.received, `${2 * MB} ${expected}`)
  }, {
    fn: (p, d) => {
      const f = p.data
      if (d !== 'a->b' || f.readUInt16BE(12) !== 0x0800 || f[23] !== 6) return 'forward'
      const l4 = 14 + (f[14] & 0x0f) * 4
      const payload = l4 + (f[l4 + 12] >> 4) * 4
      if (f.readUInt16BE(l4 + 2) !== 5000 || payload >= f.length) return 'forward'
      const changed = Buffer.from(f)
      for (let i = payload; i < changed.length; i++) if (changed[i] === a) changed[i] = b
      rewritten++
      return changed
    },
  })
  t.true(rewritten > 0)
  t.is(stats['a->b'].droppedRejected, 0)
})

test.serial('without offload metadata (offload: false) TCP does not get through: the failure it exists for', async (t) => {
  const net = twoHosts(t)
  const { stats } = await bridged(net, async () => {
    // A client that connected and then failed (timed out sending) fails the transfer too.
    const r = await transfer(net.left, net.right, 300_000, { connectSeconds: 3 }).catch(() => ({ reachable: false, received: '', sent: '' }))
    t.false(r.reachable && r.received === r.sent, 'the transfer must fail without the metadata')
  }, { offload: false })
  t.true(stats['a->b'].forwarded > 0, 'the frames were forwarded, and the receiver dropped them')
})

test.serial('pkt.offload shows what the sending stack did: TSO frames of gsoType tcpv4 and gsoSize = MSS', async (t) => {
  const net = twoHosts(t)
  using capture = Capture.open(net.a, { offloadInfo: true, ignoreOutgoing: true, profile: 'low-latency' })
  using plain = Capture.open(net.a, { ignoreOutgoing: true, profile: 'low-latency' })
  const seen: { gsoType: string; gsoSize: number; hdrLen: number; csumStart: number; csumOffset: number; needsCsum: boolean; tcpHeaderEnd: number; length: number }[] = []
  let plainOffload = 0
  let done = false
  const reading = (async () => {
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline && !done) {
      const batch = capture.nextBatch()
      if (batch) {
        for (const p of batch) {
          const o = p.offload
          const f = p.data
          if (o && f.readUInt16BE(12) === 0x0800 && f[23] === 6) {
            const l4 = 14 + (f[14] & 0x0f) * 4
            seen.push({ ...o, tcpHeaderEnd: l4 + (f[l4 + 12] >> 4) * 4, length: p.length })
          }
        }
        batch.release()
      }
      const other = plain.nextBatch()
      if (other) {
        for (const p of other) if (p.offload !== undefined) plainOffload++
        other.release()
      }
      if (!batch) await new Promise((r) => setTimeout(r, 1))
    }
  })()
  let mss = 0
  await bridged(net, async () => {
    const r = await transfer(net.left, net.right, 4 * MB)
    t.is(r.received, r.sent)
    mss = r.mss
  })
  done = true
  await reading
  const tso = seen.filter((o) => o.gsoType === 'tcpv4')
  t.true(tso.length > 0, 'the stack handed the veth TSO frames')
  for (const o of tso) {
    t.is(o.gsoSize, mss, 'gsoSize is the connection MSS')
    t.true(o.needsCsum)
    t.is(o.csumStart, 34, 'the checksum covers the TCP header on')
    t.is(o.csumOffset, 16, "at the TCP checksum's place")
    t.is(o.hdrLen, o.tcpHeaderEnd, 'hdrLen ends with the TCP header')
  }
  t.true(tso.some((o) => o.length > 1514), 'some are larger than the MTU')
  t.is(plainOffload, 0, 'a capture without offloadInfo has no packet.offload')
})

test.serial("a frame whose offload metadata no longer fits what the callback returned is counted as droppedRejected", async (t) => {
  const net = twoHosts(t)
  let cut = 0
  const { stats, calls } = await bridged(net, async () => {
    const echo = runIn(net.right.ns, python(UDP_ECHO_ALL, net.right.ip, '4'), 30_000)
    const reply = await runIn(net.left.ns, python(UDP_SIZES, net.right.ip, '2', '100'), 30_000)
    t.is(reply.trim(), 'lost 100', 'no datagram got through')
    await echo
  }, {
    // UDP leaves its host with the checksum still to fill in at byte 40; cut the frame short
    // of it.
    fn: (p, d) => {
      if (d !== 'a->b' || p.data.readUInt16BE(12) !== 0x0800 || p.data[23] !== 17 || !p.offload?.needsCsum) return 'forward'
      cut++
      return Buffer.from(p.data.subarray(0, 30))
    },
  })
  t.true(cut > 0)
  t.is(stats['a->b'].droppedRejected, cut, 'every cut frame was refused and counted')
  const s = stats['a->b']
  t.is(s.forwarded + s.droppedByCallback + s.droppedTooLarge + s.droppedRingFull + s.droppedRejected, calls['a->b'])
})
