// The AF_XDP rows of `npm run bench`: XdpSocket receiving (JavaScript paths against the engine's
// native AF_XDP loop and against AF_PACKET) and sending, on a veth pair of its own with one queue
// per end (native XDP on a veth needs the peer to have no more TX queues than it has RX queues),
// in two set-ups:
// - default: as the veth comes; receive work runs in softirq on the sender's core;
// - split: threaded NAPI on the receiving end, its kthread pinned to the consumer's core, so the
//   sender's core only sends (../shared platform notes: the C probe reached ≈1.35 Mpps there).
// The sender offers all it can (≈1.8 Mpps on the split set-up, more than any consumer drains, so
// the fill ring runs dry on every path). The paced rows offer a fixed rate instead (`pacedMpps`,
// `--xdp-rate=1.0,1.2`) and say whether a consumer keeps up with it: received = sent, no drops.
//
// The drain rows fill the RX ring (65,536 frames) while nobody reads, then time consuming it:
// what a consumer costs with no sender and no NAPI beside it, as the AF_PACKET drain rows do.
//
// Just the drain rows: `node bench/afxdp.mjs --drain`. The drain and paced rows:
// `node bench/afxdp.mjs [--xdp-rate=1.2] [--xdp-batch=64] [--seconds=3]` (root; after `npm run build`).

import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import { onConsumerCore, run, senderCpu, sh, sleep, start, twoCores } from './lib.mjs'

/** Offered loads of the paced rows, in Mpps, from `--xdp-rate=1.0,1.2` (default 1.2). */
export const pacedMpps = (argv) =>
  (argv.find((a) => a.startsWith('--xdp-rate='))?.slice('--xdp-rate='.length) ?? '1.2').split(',').map((r) => {
    const mpps = Number(r)
    if (!(mpps > 0)) throw new Error(`--xdp-rate: ${r} is not a rate in Mpps`)
    return mpps
  })

/** Frames an AF_XDP drain run fills the RX ring with: the largest ring the engine makes. */
const XDP_DRAIN_N = 65_536

/** Packets the paced sender sends per batch (one sendmmsg, then a sleep until the next is due). */
const PACED_BATCH = Number(process.argv.find((a) => a.startsWith('--xdp-batch='))?.slice('--xdp-batch='.length) ?? 64)
if (!(Number.isInteger(PACED_BATCH) && PACED_BATCH >= 1 && PACED_BATCH <= 1024)) throw new Error('--xdp-batch: a whole number of packets, 1 to 1024')

/**
 * A paced row kept up when every frame sent arrived with no drop and no fill-ring starvation,
 * and the sender did offer the rate (within 2 %: a sender that fell behind offered less).
 */
const keptUp = (r) => r.packets === r.sent && r.drops === 0 && r.fillEmpty === 0 && r.sentKpps >= r.offeredMpps * 1000 * 0.98

/**
 * Runs the AF_XDP rows; returns `{ rx: [...], paced: [...], tx: [...], targets: [...] }`.
 * `only: 'drain'` runs the drain rows alone, `only: 'paced'` the drain and paced rows, `only: 'tx'`
 * the transmit rows alone (no targets).
 */
export async function afxdpBench({ Capture, XdpSocket, BENCH, LIVE_S, TX_N, FRAME, PACED_MPPS = [1.2], only, progress }) {
  const now = () => performance.now()
  const id = `x${process.pid.toString(36)}`
  const ns = `netring-bench-${id}`
  const near = `nb${id}a`
  const far = `nb${id}b`
  const remove = () => {
    for (const args of [['link', 'del', near], ['netns', 'del', ns]]) {
      try {
        sh('ip', args)
      } catch {
        // already gone
      }
    }
  }
  process.on('exit', remove)
  sh('ip', ['netns', 'add', ns])
  sh('ip', ['link', 'add', near, 'numtxqueues', '1', 'numrxqueues', '1', 'type', 'veth', 'peer', 'name', far, 'numtxqueues', '1', 'numrxqueues', '1', 'netns', ns])
  sh('sysctl', ['-qw', `net.ipv6.conf.${near}.disable_ipv6=1`])
  sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${far}.disable_ipv6=1`])
  sh('ip', ['link', 'set', near, 'up'])
  sh('ip', ['-n', ns, 'link', 'set', far, 'up'])
  const nearMac = readFileSync(`/sys/class/net/${near}/address`, 'utf8').trim()
  const farRx = () => JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', far]))[0].stats64.rx.packets
  const sender = (seconds, count = 1e12, pace = []) =>
    run('ip', ['netns', 'exec', ns, ...senderCpu, BENCH, 'sendmmsg', far, String(count), String(FRAME), nearMac, String(seconds), ...pace]).then(JSON.parse)

  const rxPaths = {
    'XdpSocket nextBatchBlocking, indexed': async (xsk, until) => {
      let n = 0
      while (now() < until) {
        const b = xsk.nextBatchBlocking(Math.max(1, until - now()))
        if (!b) continue
        const runs = b.runs
        for (let i = 0; i < b.length; i++) n += runs[b.runAt(i)][b.offsetAt(i)] >= 0 ? 1 : 0
      }
      return n
    },
    'XdpSocket for await': async (xsk, until) => {
      let n = 0
      try {
        for await (const p of xsk.iterate({ signal: AbortSignal.timeout(Math.max(1, Math.round(until - now()))) })) if (p.length > 0) n++
      } catch (e) {
        if (e.name !== 'AbortError') throw e
      }
      return n
    },
    "XdpSocket 'batch' event, indexed": (xsk, until) =>
      new Promise((resolve) => {
        let n = 0
        xsk.on('batch', (b) => {
          const runs = b.runs
          for (let i = 0; i < b.length; i++) n += runs[b.runAt(i)][b.offsetAt(i)] >= 0 ? 1 : 0
        })
        setTimeout(() => {
          xsk.pause()
          resolve(n)
        }, until - now())
      }),
  }

  /** JavaScript ways to drain `expected` packets from a filled RX ring, reading a byte of each. */
  const drainPaths = {
    'XdpSocket nextBatch, indexed': (xsk, expected) => {
      let n = 0
      const t0 = now()
      let t1 = t0
      // Until every packet, or the ring stays empty (as the native loop does).
      while (n < expected && now() - t1 < 300) {
        const b = xsk.nextBatch()
        if (!b) continue
        const runs = b.runs
        for (let i = 0; i < b.length; i++) n += runs[b.runAt(i)][b.offsetAt(i)] >= 0 ? 1 : 0
        t1 = now()
      }
      return { packets: n, ms: t1 - t0 }
    },
    'XdpSocket packets()': (xsk, expected) => {
      let n = 0
      const t0 = now()
      for (const p of xsk.packets({ limit: expected, timeoutMs: 5000 })) n += p.data[0] >= 0 ? 1 : 0
      return { packets: n, ms: now() - t0 }
    },
  }

  /**
   * One drain run: the sender fills the ring (on the default set-up the receive work runs on its
   * core), then `consume` reads every frame. A run whose ring lost a frame or met an empty fill
   * ring would time something else: it is taken again (twice at most, then the bench fails).
   */
  async function drainOnce(name, consume, tries = 3) {
    let r
    if (name === 'native AF_XDP loop') {
      const consumer = start(...onConsumerCore(BENCH, ['xdp-drain', near, String(XDP_DRAIN_N)]), { stdin: 'pipe' })
      await consumer.line(/ready/)
      const sent = await sender(10, XDP_DRAIN_N)
      await sleep(100)
      consumer.child.stdin.end('go\n')
      const out = JSON.parse((await consumer.exited).out.trim().split('\n').at(-1))
      r = { sent: sent.frames, packets: out.packets, ms: out.ns / 1e6, drops: out.drops, fillEmpty: out.fill_empty }
    } else {
      const xsk = XdpSocket.open(near, { mode: 'rx', attach: 'driver', frameCount: XDP_DRAIN_N, ringSize: XDP_DRAIN_N })
      try {
        const sent = await sender(10, XDP_DRAIN_N)
        await sleep(100)
        const { packets, ms } = consume(xsk, sent.frames)
        const s = xsk.stats()
        r = { sent: sent.frames, packets, ms, drops: s.rxDropped, fillEmpty: s.rxFillRingEmptyDescs }
      } finally {
        xsk.close()
      }
    }
    if (r.packets === r.sent && r.drops === 0 && r.fillEmpty === 0) return r
    if (tries > 1) return drainOnce(name, consume, tries - 1)
    throw new Error(`AF_XDP drain (${name}): ${r.packets} of ${r.sent} frames, ${r.drops} dropped, ${r.fillEmpty} fill-ring empty`)
  }

  /** First run, then the best of three more: V8 compiles the loop during the first. */
  async function drainRows() {
    for (const name of ['native AF_XDP loop', ...Object.keys(drainPaths)]) {
      progress(`AF_XDP drain: ${name}`)
      const first = await drainOnce(name, drainPaths[name])
      let best = null
      for (let i = 0; i < 3; i++) {
        const r = await drainOnce(name, drainPaths[name])
        if (!best || r.packets / r.ms > best.packets / best.ms) best = r
      }
      results.drain.push({ path: name, packets: best.packets, mpps: best.packets / best.ms / 1000, firstMpps: first.packets / first.ms / 1000 })
    }
  }

  /**
   * One receive row. Unpaced, the sender offers all it can for LIVE_S; paced (`mpps`), it sends
   * exactly `mpps` × LIVE_S million frames on a fixed schedule (stopping at 1.5× its length if it
   * falls behind), and the consumer reads until that bound and a margin: whatever was sent has
   * arrived by then, so received = sent when the consumer keeps up.
   */
  async function rxRun(setup, name, consume, pin, mpps) {
    let packets
    let drops
    let fillEmpty
    let cpuNs
    const count = mpps ? Math.round(mpps * 1e6 * LIVE_S) : 1e12
    const sendS = mpps ? 1.5 * LIVE_S : LIVE_S
    const send = () => sender(sendS, count, mpps ? [`--rate=${mpps * 1e6}`, `--batch=${PACED_BATCH}`] : [])
    // Paced, the receiving NAPI kthread's CPU share while the sender runs: on the split set-up it
    // shares the consumer's core, so it says which of the two that core spent itself on.
    let napi = []
    let napi0 = 0
    const pinned = () => {
      if (pin) pinNapi(near)
      napi = mpps && pin ? napiThreads(near) : []
      napi0 = napiCpuNs(napi)
    }
    // Read before the socket closes: the kthreads go with the attachment.
    const napiNs = () => (napi.length ? napiCpuNs(napi) - napi0 : null)
    const row = (sent, r) => ({
      setup,
      path: name,
      ...(mpps && {
        offeredMpps: mpps,
        sentKpps: sent.frames / (sent.ns / 1e6),
        senderCpu: sent.cpu_ns / sent.ns,
        napiCpu: r.napiNs === null ? null : r.napiNs / sent.ns,
        refused: sent.refused,
        lateMaxUs: sent.late_max_ns / 1000,
      }),
      sent: sent.frames,
      packets: r.packets,
      kpps: r.packets / LIVE_S / 1000,
      drops: r.drops,
      fillEmpty: r.fillEmpty,
      batches: r.batches,
      waits: r.waits,
      cpuNsPerPacket: r.cpuNs / Math.max(1, r.packets),
    })
    const cpu0 = process.cpuUsage()
    if (name === 'native AF_XDP loop') {
      // Whole seconds: the sender's, then one more for the last packets.
      const consumer = start(...onConsumerCore(BENCH, ['xdp-live', near, String(Math.ceil(sendS) + 1)]))
      await consumer.line(/ready/)
      pinned()
      const sent = await send()
      const napiUsed = napiNs()
      const r = JSON.parse((await consumer.exited).out.trim().split('\n').at(-1))
      return row(sent, { napiNs: napiUsed, packets: r.packets, drops: r.drops, fillEmpty: r.fill_empty, batches: r.batches, waits: r.waits, cpuNs: r.cpu_ns })
    }
    if (name === 'AF_PACKET Capture nextBatchBlocking, indexed') {
      const cap = Capture.open(near, { profile: 'high-throughput' })
      const sending = sender(LIVE_S)
      const until = now() + LIVE_S * 1000 + 500
      packets = 0
      while (now() < until) {
        const b = cap.nextBatchBlocking(Math.max(1, until - now()))
        if (!b) continue
        const bytes = b.bytes
        for (let i = 0; i < b.length; i++) packets += bytes[b.offsetAt(i)] >= 0 ? 1 : 0
      }
      const sent = await sending
      drops = cap.stats().drops
      cap.close()
      const cpu = process.cpuUsage(cpu0)
      return { setup, path: name, sent: sent.frames, packets, kpps: packets / LIVE_S / 1000, drops, fillEmpty: null, batches: null, waits: null, cpuNsPerPacket: ((cpu.user + cpu.system) * 1000) / Math.max(1, packets) }
    }
    const xsk = XdpSocket.open(near, { mode: 'rx', attach: 'driver' })
    pinned()
    const sending = send()
    // The indexed path blocks this thread until `until`: it cannot stop when the sender does.
    packets = await consume(xsk, now() + sendS * 1000 + (mpps ? 1000 : 500))
    const sent = await sending
    const napiUsed = napiNs()
    const s = xsk.stats()
    drops = s.rxDropped
    fillEmpty = s.rxFillRingEmptyDescs
    const { batches, waits } = s
    xsk.close()
    const cpu = process.cpuUsage(cpu0)
    cpuNs = (cpu.user + cpu.system) * 1000
    return row(sent, { napiNs: napiUsed, packets, drops, fillEmpty, batches, waits, cpuNs })
  }

  // The paced rows: the split set-up (the one where the consumer's core does all the receive
  // work), the engine's loop and the fastest JS path, at each offered load.
  async function pacedRows() {
    for (const mpps of PACED_MPPS) {
      for (const name of ['native AF_XDP loop', 'XdpSocket nextBatchBlocking, indexed']) {
        progress(`AF_XDP RX (split, paced at ${mpps} Mpps): ${name}`)
        results.paced.push(await rxRun('split', name, rxPaths[name], true, mpps))
        await sleep(100)
      }
    }
  }

  const results = { drain: [], rx: [], paced: [], tx: [] }
  try {
    if (only !== 'tx') {
      progress('AF_XDP: warming up the sender')
      await sender(0.5)
    }
    if (only === 'drain') {
      await drainRows()
      return results
    }
    if (only === 'paced') {
      await drainRows()
      split(XdpSocket, near)
      await pacedRows()
      return results
    }
    if (only !== 'tx') await drainRows()
    for (const setup of only === 'tx' ? [] : ['default', 'split']) {
      if (setup === 'split') split(XdpSocket, near)
      // AF_PACKET is measured on the default set-up only: without XDP or GRO a veth has no NAPI to thread.
      const paths = [['native AF_XDP loop'], ...Object.entries(rxPaths), ...(setup === 'default' ? [['AF_PACKET Capture nextBatchBlocking, indexed']] : [])]
      for (const [name, consume] of paths) {
        progress(`AF_XDP RX (${setup}): ${name}`)
        results.rx.push(await rxRun(setup, name, consume, setup === 'split'))
        await sleep(100)
      }
    }
    if (only !== 'tx') await pacedRows()

    const template = (seq) => {
      const f = Buffer.alloc(FRAME)
      Buffer.from('ffffffffffff020000bebe02', 'hex').copy(f)
      f.writeUInt16BE(0x88b5, 12)
      f.writeUInt32BE(seq, 14)
      return f
    }
    const txPaths = {
      'XdpSocket.sendFrames (256)': (xsk) => {
        const frames = Array.from({ length: 256 }, (_, i) => template(i))
        for (let i = 0; i < TX_N; ) {
          const n = Math.min(256, TX_N - i)
          const queued = xsk.sendFrames(n === 256 ? frames : frames.slice(0, n))
          i += queued
          xsk.flush()
        }
      },
      'XdpSocket.allocateRun (zero-copy, 256)': (xsk) => {
        const f = template(0)
        for (let i = 0; i < TX_N; ) {
          const run = xsk.allocateRun(Math.min(256, TX_N - i), FRAME)
          if (!run) {
            xsk.flush()
            continue
          }
          for (let j = 0; j < run.count; j++) {
            const slot = run.slot(j)
            f.copy(slot)
            slot.writeUInt32BE(i + j, 14)
          }
          run.send()
          xsk.flush()
          i += run.count
        }
      },
    }
    const transmit = async (name, send) => {
      const before = farRx()
      const t0 = now()
      if (send) {
        const xsk = XdpSocket.open(near, { mode: 'tx' })
        send(xsk)
        xsk.drain(10_000)
        xsk.close()
      } else {
        await run(...onConsumerCore(BENCH, ['xdp-tx', near, String(TX_N), String(FRAME), 'ff:ff:ff:ff:ff:ff']))
      }
      const ms = now() - t0
      await sleep(200)
      const received = farRx() - before
      return { path: name, frames: TX_N, received, mpps: received / ms / 1000 }
    }
    progress('AF_XDP TX: native AF_XDP loop')
    results.tx.push(await transmit('native AF_XDP loop (send, flush per 256)'))
    for (const [name, send] of Object.entries(txPaths)) {
      progress(`AF_XDP TX: ${name}`)
      results.tx.push(await transmit(name, send))
    }
  } finally {
    remove()
  }

  const rxOf = (setup, path) => results.rx.find((r) => r.setup === setup && r.path === path)
  const nativeTx = results.tx[0].mpps
  const jsSplit = rxOf('split', 'XdpSocket nextBatchBlocking, indexed')
  // Starvation is judged where the offered load is the target's 1.2 Mpps (or the lowest rate above
  // it), not under the unpaced sender, which offers more than any consumer drains.
  const pacedRate = Math.min(...PACED_MPPS.filter((r) => r >= 1.2))
  const jsPaced = results.paced.find((r) => r.offeredMpps === pacedRate && r.path === 'XdpSocket nextBatchBlocking, indexed')
  results.targets = [
    ...(only === 'tx'
      ? []
      : [
          ['AF_XDP: JS RX on the split set-up ≥ 1.2 Mpps (figure: Mpps)', jsSplit.kpps / 1000, 1.2],
          [
            `AF_XDP: JS RX on the split set-up keeps up with a paced ${jsPaced ? pacedRate : 1.2} Mpps: the sender reached it, received = sent, zero drops and fill-ring starvation (figure: empty-fill count)`,
            jsPaced ? jsPaced.fillEmpty : NaN,
            () => jsPaced !== undefined && keptUp(jsPaced),
          ],
        ]),
    ['AF_XDP: sendFrames ≥ 0.8× native AF_XDP TX', results.tx[1].mpps / nativeTx, 0.8],
    ['AF_XDP: allocateRun ≥ 0.8× native AF_XDP TX', results.tx[2].mpps / nativeTx, 0.8],
  ]
  return results
}

/**
 * The split set-up: threaded NAPI on the receiving end. A veth has NAPI only while a native XDP
 * program (or GRO) is on, so the setting is made with a socket open; it stays for the NAPI
 * instances later attachments create, whose kthreads `pinNapi` moves to the consumer's core.
 */
function split(XdpSocket, dev) {
  const xsk = XdpSocket.open(dev, { mode: 'rx', attach: 'driver' })
  try {
    writeFileSync(`/sys/class/net/${dev}/threaded`, '1')
  } finally {
    xsk.close()
  }
}

/** The pids of `dev`'s NAPI kthreads (threaded NAPI names them `napi/<dev>-<id>`). */
function napiThreads(dev) {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim().startsWith(`napi/${dev}`)
      } catch {
        return false // gone meanwhile
      }
    })
}

function pinNapi(dev) {
  if (!twoCores) return
  for (const pid of napiThreads(dev)) sh('taskset', ['-pc', '0', pid])
}

/** CPU time (ns) the kthreads `pids` have used, at the kernel's clock-tick resolution. */
function napiCpuNs(pids) {
  const tick = 1e9 / Number(sh('getconf', ['CLK_TCK']).trim())
  let ticks = 0
  for (const pid of pids) {
    try {
      // utime and stime: fields 14 and 15, counted after the parenthesised comm.
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // gone meanwhile: it stopped with its attachment
    }
  }
  return ticks * tick
}

/**
 * What bounds JS receive on the split set-up, from figures of the same run: the reader alone
 * (the drain rows) against what the consumer's core spends on the receiving NAPI thread per
 * packet (the paced rows) and what the sender reached. Null without both kinds of rows.
 */
export function afxdpBounds(results, fmt) {
  const jsDrain = results.drain.find((r) => r.path === 'XdpSocket nextBatch, indexed')
  const paced = results.paced.filter((r) => r.napiCpu > 0).sort((a, b) => b.sentKpps - a.sentKpps)[0]
  if (!jsDrain || !paced) return null
  const napiNs = (paced.napiCpu * 1e9) / (paced.sentKpps * 1000)
  const napiAtTarget = (1.2e6 * napiNs) / 1e9
  return (
    `- AF_XDP receive at 1.2 Mpps on the split set-up: the JavaScript reader alone drains a filled RX ring at ${fmt(jsDrain.mpps)} Mpps ` +
    `(\`nextBatch\` indexed, ${fmt(jsDrain.mpps / results.drain[0].mpps, 3)}× the native loop). Live, the reader's core also runs the receiving NAPI thread, ` +
    `which took ${fmt(napiNs, 0)} ns per packet (${fmt(paced.napiCpu * 100, 0)} % of the core at ${fmt(paced.sentKpps, 0)} kpps): at 1.2 Mpps that is ` +
    `${fmt(napiAtTarget * 100, 0)} % of the core before any reader runs${napiAtTarget >= 1 ? ', more than the core has, for the native loop as for JavaScript' : ''}. ` +
    `The sender reached at most ${fmt(Math.max(...results.paced.map((r) => r.sentKpps)), 0)} kpps of the rates offered.`
  )
}

/** Adds the drain table to the report. */
export function drainReport(results, { lines, FRAME, fmt, table }) {
  lines.push(
    `**AF_XDP drain** (${XDP_DRAIN_N.toLocaleString()} × ${FRAME}-byte frames sent into an RX ring nobody reads, then consumed, a byte of each packet read; no frame lost, the fill ring never empty; the best of three runs after a first)`,
    '',
  )
  table(
    ['path', 'Mpps', 'first run, Mpps', '× native AF_XDP loop'],
    results.drain.map((r) => [r.path, fmt(r.mpps), fmt(r.firstMpps), fmt(r.mpps / results.drain[0].mpps, 3)]),
  )
}

/** Adds the paced receive table to the report. */
export function pacedReport(results, { lines, LIVE_S, FRAME, fmt, table }) {
  lines.push(
    `**AF_XDP receive, paced sender** (split set-up; the sender offers a fixed rate for ${LIVE_S} s, batches of ${PACED_BATCH} per sendmmsg on a fixed schedule, sleeping between them; ` +
      `${FRAME}-byte frames; "kept up": received = sent, no rx drops, no fill-ring starvation, and the sender reached 98 % of the rate; "refused": sends the veth refused because the receiving end's queue was full, sent again; ` +
      `"late": how far behind its schedule the sender fell at worst; "sender CPU": the sender's share of its core, the veth's transmit included; "NAPI CPU": the receiving end's NAPI kthread's share of the consumer's core while the sender ran)`,
    '',
  )
  const perBatch = (r) => (r.batches ? fmt(r.packets / r.batches, 0) : 'n/a')
  const waitsPerK = (r) => fmt((r.waits * 1000) / Math.max(1, r.packets), 1)
  table(
    ['offered Mpps', 'path', 'sent', 'sent kpps', 'sender CPU %', 'refused', 'late (µs, max)', 'NAPI CPU %', 'received', 'rx dropped', 'fill ring empty', 'kept up', 'pkts/batch', 'waits/1k pkts', 'CPU ns/pkt'],
    results.paced.map((r) => [
      fmt(r.offeredMpps, 2),
      r.path,
      r.sent.toLocaleString(),
      fmt(r.sentKpps, 0),
      fmt(r.senderCpu * 100, 0),
      r.refused,
      fmt(r.lateMaxUs, 0),
      fmt(r.napiCpu === null ? null : r.napiCpu * 100, 0),
      r.packets.toLocaleString(),
      r.drops,
      r.fillEmpty,
      keptUp(r) ? 'yes' : 'no',
      perBatch(r),
      waitsPerK(r),
      fmt(r.cpuNsPerPacket, 0),
    ]),
  )
}

/** Adds the AF_XDP tables to the report (`lines`, through its `table`). */
export function afxdpReport(results, { lines, LIVE_S, TX_N, FRAME, fmt, table, nativeTxAfPacket }) {
  drainReport(results, { lines, FRAME, fmt, table })
  lines.push(`**AF_XDP receive** (a raw-socket sender at its maximum rate for ${LIVE_S} s per path, ${FRAME}-byte frames, driver mode, copy: veth has no zero-copy)`, '')
  // Packets per batch and waits per 1000 packets are counts, not timings: they say whether a
  // reader keeps up in few large batches or sleeps and wakes every few packets.
  const perBatch = (r) => (r.batches ? fmt(r.packets / r.batches, 0) : 'n/a')
  const waitsPerK = (r) => (r.waits === null ? 'n/a' : fmt((r.waits * 1000) / Math.max(1, r.packets), 1))
  table(
    ['set-up', 'path', 'sent', 'received', 'kpps', 'rx dropped', 'fill ring empty', 'pkts/batch', 'waits/1k pkts', 'CPU ns/pkt'],
    results.rx.map((r) => [r.setup, r.path, r.sent.toLocaleString(), r.packets.toLocaleString(), fmt(r.kpps, 0), r.drops, r.fillEmpty ?? 'n/a', perBatch(r), waitsPerK(r), fmt(r.cpuNsPerPacket, 0)]),
  )
  pacedReport(results, { lines, LIVE_S, FRAME, fmt, table })
  lines.push(`**AF_XDP transmit** (${TX_N.toLocaleString()} × ${FRAME}-byte frames, counted on the receiving end)`, '')
  table(
    ['path', 'received', 'Mpps', '× native AF_XDP TX', '× native AF_PACKET TX'],
    results.tx.map((r) => [r.path, r.received.toLocaleString(), fmt(r.mpps), fmt(r.mpps / results.tx[0].mpps, 3), fmt(r.mpps / nativeTxAfPacket, 3)]),
  )
}

// `node bench/afxdp.mjs [--xdp-rate=1.0,1.2] [--seconds=3]`: the drain and paced rows, on a network
// of their own, pinned as in `npm run bench` (this process and native consumers on core 0, the
// sender on core 1); prints their tables and what bounds receive at 1.2 Mpps. `node bench/afxdp.mjs --tx [frames]`: the transmit rows
// alone, each with its ratio to the native loop. `npm run bench` runs every row.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.getuid?.() !== 0) {
    console.error('bench/afxdp.mjs needs root: it creates a namespace and attaches XDP programs')
    process.exit(1)
  }
  const root = fileURLToPath(new URL('..', import.meta.url))
  execFileSync('cargo', ['build', '--quiet', '--release', '-p', 'netring-engine', '--example', 'bench'], { cwd: root, stdio: 'inherit' })
  const { XdpSocket } = await import('netring')
  // As in `npm run bench`: this process on core 0.
  if (twoCores) sh('taskset', ['-cp', '0', String(process.pid)])
  const progress = (text) => process.stderr.write(`\r\x1b[K${text}`)
  if (process.argv.includes('--drain')) {
    const { drain } = await afxdpBench({ XdpSocket, BENCH: `${root}target/release/examples/bench`, FRAME: 64, progress, only: 'drain' })
    progress('')
    for (const r of drain) console.log(`${r.path}: ${r.mpps.toFixed(3)} Mpps (first run ${r.firstMpps.toFixed(3)}), ${(r.mpps / drain[0].mpps).toFixed(3)}x native`)
  } else if (process.argv.includes('--tx')) {
    const TX_N = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 1_000_000)
    const { tx } = await afxdpBench({ XdpSocket, BENCH: `${root}target/release/examples/bench`, TX_N, FRAME: 64, progress, only: 'tx' })
    progress('')
    for (const r of tx) console.log(`${r.path}: ${r.received.toLocaleString()} received, ${r.mpps.toFixed(3)} Mpps, ${(r.mpps / tx[0].mpps).toFixed(3)}x native`)
  } else {
    const LIVE_S = Number(process.argv.find((a) => a.startsWith('--seconds='))?.slice('--seconds='.length) ?? 3)
    const FRAME = 64
    const results = await afxdpBench({ XdpSocket, BENCH: `${root}target/release/examples/bench`, LIVE_S, FRAME, PACED_MPPS: pacedMpps(process.argv), only: 'paced', progress })
    progress('')
    const lines = []
    const fmt = (x, digits = 2) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(digits))
    const table = (header, rows) => {
      lines.push(`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`)
      for (const r of rows) lines.push(`| ${r.join(' | ')} |`)
      lines.push('')
    }
    drainReport(results, { lines, FRAME, fmt, table })
    pacedReport(results, { lines, LIVE_S, FRAME, fmt, table })
    lines.push(afxdpBounds(results, fmt) ?? '')
    console.log(lines.join('\n'))
  }
}
