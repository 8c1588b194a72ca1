// Capture to disk and filter cost: the rows of issue-level targets for files and filters.
//
// - Drain: a ring pre-filled while nobody reads, then written to a pcapng file on tmpfs by the
//   library's native writer (PcapWriter.write(batch), in this process) and by the `netring
//   capture -w` command (a child, timed like tcpdump -w in run.mjs: until the file holds every
//   packet).
// - Live: the same two at the sender's maximum rate: packets, drops, CPU per packet.
// - Filter cost: live, a 20-instruction filter against none, in host CPU per packet (every core:
//   on veth the socket filter runs in the sender's softirq, not in the consumer).

import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs'

import { onConsumerCore, sleep, start } from './lib.mjs'

const SHM = '/dev/shm'
/** pcapng: an Enhanced Packet Block around a 64-byte frame, with its epb_flags option. */
const epbBytes = (frame) => 28 + frame + ((4 - (frame % 4)) % 4) + 8 + 4 + 4

/** Busy jiffies of every core (user, nice, system, irq, softirq, steal) from /proc/stat. */
function hostBusyNs() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const [user, nice, system, , , irq, softirq, steal] = f
  return ((user + nice + system + irq + softirq + steal) * 1e9) / 100 // USER_HZ is 100
}

/** CPU time of process `pid` (utime + stime) in ns. */
function processCpuNs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1e9) / 100
}

const fileSize = (path) => {
  try {
    return statSync(path).size
  } catch {
    return 0
  }
}

export async function fileBench(ctx) {
  const { Capture, PcapWriter, compileFilter, net, sender, LIVE_S, FRAME, DRAIN_OPTIONS, RETIRED_AFTER_MS, root, progress, now } = ctx
  const cli = `${root}dist/cli/main.js`
  const out = { drain: [], live: [], filter: [] }

  progress('files: drain into PcapWriter (native, pcapng on tmpfs)')
  {
    const file = `${SHM}/netring-bench-writer-${process.pid}.pcapng`
    const cap = Capture.open(net.near, DRAIN_OPTIONS)
    try {
      const sent = await sender(ctx.N)
      await sleep(RETIRED_AFTER_MS)
      const expected = cap.stats().packets
      const t0 = now()
      const w = PcapWriter.open(file, { interface: net.near, format: 'pcapng' })
      let n = 0
      while (n < expected) {
        const b = cap.nextBatch()
        if (!b) break
        w.write(b)
        n += b.length
      }
      w.close(cap.stats())
      const ms = now() - t0
      out.drain.push({ path: 'PcapWriter.write(batch), pcapng to tmpfs', packets: w.packetsWritten, expected, ms, sent: sent.frames, bytes: fileSize(file) })
    } finally {
      cap.close()
      rmSync(file, { force: true })
    }
  }

  progress('files: tmpfs write bandwidth')
  {
    // Not netring: the same number of bytes written to a new tmpfs file in 4 MiB writes, the
    // bound of every drain-to-file path here (tmpfs allocates and zeroes each page it fills).
    const file = `${SHM}/netring-bench-bandwidth-${process.pid}`
    const chunk = Buffer.alloc(4 << 20, 1)
    const total = ctx.N * epbBytes(FRAME)
    const fd = openSync(file, 'w')
    const t0 = now()
    for (let left = total; left > 0; left -= chunk.length) writeSync(fd, chunk, 0, Math.min(left, chunk.length))
    const ms = now() - t0
    closeSync(fd)
    rmSync(file, { force: true })
    out.drain.push({ path: '(reference, not netring) the same bytes written to tmpfs, 4 MiB at a time', packets: ctx.N, expected: ctx.N, ms })
  }

  progress('files: drain into netring capture -w')
  out.drain.push(await drainChild('netring capture -w (pcapng, tmpfs)', 'pcapng', (file) => onConsumerCore(process.execPath, [cli, 'capture', '-i', net.near, '-w', file])))

  async function drainChild(path, kind, command) {
    const file = `${SHM}/netring-bench-cli-${process.pid}.${kind}`
    const counter = Capture.open(net.near, DRAIN_OPTIONS) // sees what the child's socket sees
    const child = start(...command(file))
    try {
      await child.line(/listening on/)
      await sleep(200)
      const header = fileSize(file)
      child.child.kill('SIGSTOP')
      const sent = await sender(ctx.N)
      await sleep(RETIRED_AFTER_MS)
      const expected = counter.stats().packets
      counter.close()
      const per = epbBytes(FRAME)
      const want = header + expected * per
      const t0 = now()
      child.child.kill('SIGCONT')
      let size = header
      let grew = t0
      while (size < want && now() - grew < 500) {
        await sleep(2)
        const next = fileSize(file)
        if (next > size) {
          size = next
          grew = now()
        }
      }
      return { path, packets: Math.round((size - header) / per), expected, ms: grew - t0, sent: sent.frames }
    } finally {
      if (!counter.closed) counter.close()
      child.child.kill('SIGKILL')
      await child.exited
      rmSync(file, { force: true })
    }
  }

  // ---- live ----

  /** Receives while the sender runs at its maximum rate (and half a second more). */
  async function receiveLive(cap, onBatch) {
    const cpu0 = process.cpuUsage()
    const sending = sender(1e12, LIVE_S)
    const until = now() + LIVE_S * 1000 + 500
    let n = 0
    while (now() < until) {
      const b = cap.nextBatchBlocking(Math.max(1, until - now()))
      if (!b) continue
      onBatch(b)
      n += b.length
    }
    const cpu = process.cpuUsage(cpu0)
    return { n, cpu, sent: await sending }
  }

  progress('files: live into PcapWriter')
  {
    const file = `${SHM}/netring-bench-live-${process.pid}.pcapng`
    const cap = Capture.open(net.near, { profile: 'high-throughput' })
    const w = PcapWriter.open(file, { interface: net.near })
    const before = net.nearStats()
    const { n, cpu, sent } = await receiveLive(cap, (b) => w.write(b))
    const stats = cap.stats()
    w.close(stats)
    cap.close()
    rmSync(file, { force: true })
    const after = net.nearStats()
    out.live.push({
      path: 'PcapWriter.write(batch) to tmpfs',
      sent: sent.frames,
      arrived: after.rx.packets - before.rx.packets,
      packets: n,
      ringDrops: stats.drops,
      cpuNsPerPacket: ((cpu.user + cpu.system) * 1000) / Math.max(1, n),
    })
  }

  progress('files: live into netring capture -w')
  out.live.push(await liveChild('netring capture -w (tmpfs)', (file) => onConsumerCore(process.execPath, [cli, 'capture', '-i', net.near, '-w', file])))
  if (!ctx.quick) {
    progress('files: live into tcpdump -w')
    out.live.push(await liveChild('tcpdump -w (tmpfs)', (file) => onConsumerCore('tcpdump', ['-i', net.near, '-w', file, '-B', '262144', '-s', '0', '-n'])))
  }

  async function liveChild(path, command) {
    const file = `${SHM}/netring-bench-live-cli-${process.pid}`
    const child = start(...command(file))
    try {
      await child.line(/listening on/)
      const pid = Number(readFileSync(`/proc/${child.child.pid}/task/${child.child.pid}/children`, 'utf8').trim().split(' ')[0]) || child.child.pid
      const before = net.nearStats()
      const cpu0 = processCpuNs(pid)
      const sent = await sender(1e12, LIVE_S)
      await sleep(500)
      const cpuNs = processCpuNs(pid) - cpu0
      child.child.kill('SIGINT')
      const { err } = await child.exited
      const after = net.nearStats()
      const packets = Number(/(\d+) packets captured/.exec(err)?.[1] ?? NaN)
      return {
        path,
        sent: sent.frames,
        arrived: after.rx.packets - before.rx.packets,
        packets,
        ringDrops: Number(/(\d+) packets dropped by kernel/.exec(err)?.[1] ?? NaN),
        cpuNsPerPacket: cpuNs / Math.max(1, packets),
      }
    } finally {
      child.child.kill('SIGKILL')
      await child.exited
      rmSync(file, { force: true })
    }
  }

  // ---- filter cost ----
  const expression =
    `ether dst ${net.nearMac} and ether proto 0x88b5 and not vlan and ether[6] & 1 == 0 and ` +
    'ether[14:4] < 0x10000000 and len >= 60 and len <= 1514 and greater 32 and ether[18] >= 0 and less 9000'
  const instructions = compileFilter(expression).length
  for (const [name, filter] of [
    ['no filter', undefined],
    [`${instructions}-instruction filter (accepts every frame)`, expression],
  ]) {
    progress(`files: filter cost, ${name}`)
    const cap = Capture.open(net.near, { profile: 'high-throughput', ...(filter ? { filter } : {}) })
    const busy0 = hostBusyNs()
    const { n, cpu, sent } = await receiveLive(cap, () => {})
    const busy = hostBusyNs() - busy0
    const stats = cap.stats()
    cap.close()
    out.filter.push({
      path: name,
      instructions: filter ? instructions : 0,
      sent: sent.frames,
      packets: n,
      ringDrops: stats.drops,
      consumerCpuNsPerPacket: ((cpu.user + cpu.system) * 1000) / Math.max(1, n),
      hostCpuNsPerPacket: busy / Math.max(1, n),
    })
  }
  return out
}

/** The Markdown of the rows above. */
export function fileReport(files, { tcpdumpDrain, fmt, table, lines }) {
  const mpps = (r) => r.packets / r.ms / 1000
  lines.push('**Capture to a file** (drain: the same pre-filled ring written to tmpfs; live: the sender at its maximum rate)', '')
  const drainRows = [...files.drain, ...(tcpdumpDrain ? [{ ...tcpdumpDrain, path: 'tcpdump -w (pcap, tmpfs)' }] : [])]
  table(
    ['drain path', 'packets', 'of', 'Mpps', '× tcpdump -w'],
    drainRows.map((r) => [r.path, r.packets.toLocaleString(), r.expected.toLocaleString(), fmt(mpps(r)), tcpdumpDrain ? fmt(mpps(r) / mpps(tcpdumpDrain), 2) : 'n/a']),
  )
  table(
    ['live path', 'sent', 'arrived', 'received', 'ring drops', 'CPU ns/pkt'],
    files.live.map((r) => [r.path, r.sent.toLocaleString(), r.arrived.toLocaleString(), r.packets.toLocaleString(), r.ringDrops, fmt(r.cpuNsPerPacket, 0)]),
  )
  lines.push('**Filter cost** (live; host CPU counts every core, since on veth the socket filter runs in the sender’s softirq)', '')
  table(
    ['filter', 'received', 'ring drops', 'consumer CPU ns/pkt', 'host CPU ns/pkt'],
    files.filter.map((r) => [r.path, r.packets.toLocaleString(), r.ringDrops, fmt(r.consumerCpuNsPerPacket, 0), fmt(r.hostCpuNsPerPacket, 0)]),
  )
  const [none, filtered] = files.filter
  lines.push(`Filter cost per packet (host CPU, filtered − none): ${fmt(filtered.hostCpuNsPerPacket - none.hostCpuNsPerPacket, 0)} ns.`, '')
}

/** [target, figure, need] rows for the targets table. */
export function fileTargets(files, tcpdumpDrain) {
  const mpps = (r) => r.packets / r.ms / 1000
  const cliDrain = files.drain.find((r) => r.path.startsWith('netring capture'))
  const writerDrain = files.drain.find((r) => r.path.startsWith('PcapWriter'))
  return [
    ['files: netring capture -w drain ≥ 5× tcpdump -w', tcpdumpDrain ? mpps(cliDrain) / mpps(tcpdumpDrain) : NaN, 5],
    ['files: PcapWriter drain ≥ 5× tcpdump -w', tcpdumpDrain ? mpps(writerDrain) / mpps(tcpdumpDrain) : NaN, 5],
    ['files: live capture to a file, zero ring drops', files.live.filter((r) => !r.path.startsWith('tcpdump')).every((r) => r.ringDrops === 0) ? 1 : 0, 1],
  ]
}
