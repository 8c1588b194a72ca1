// `node scripts/fuzz.mjs [seconds]`: runs the engine's fuzz targets (crates/engine/fuzz) for a
// bounded time each (60 s by default), starting from seed blocks laid out as the kernel lays
// them out, so the fuzzer mutates real structure from the first run. Needs the nightly
// toolchain and cargo-fuzz (`cargo install cargo-fuzz`); .ci/run installs both if missing.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const seconds = Number(process.argv[2] ?? 60)
if (!Number.isInteger(seconds) || seconds <= 0) throw new Error(`seconds must be a positive integer, got ${process.argv[2]}`)
const engine = fileURLToPath(new URL('../crates/engine', import.meta.url))

/** A TPACKET_V3 block with `frames`, as tpacket_rcv() writes it (x86_64 layout). */
function seedBlock(frames, { vlan = false } = {}) {
  const block = Buffer.alloc(4096)
  const first = 48
  let off = first
  const offsets = []
  for (const frame of frames) {
    const mac = 80 + 4 // headers, aligned, plus room for a VLAN tag (PACKET_RESERVE 4)
    block.writeUInt32LE(0, off) // tp_next_offset, set below
    block.writeUInt32LE(frame.length, off + 12) // tp_snaplen
    block.writeUInt32LE(frame.length, off + 16) // tp_len
    block.writeUInt32LE(1 | (vlan ? 0x10 : 0), off + 20) // TP_STATUS_USER (| VLAN_VALID)
    block.writeUInt16LE(mac, off + 24) // tp_mac
    block.writeUInt16LE(mac + 14, off + 26) // tp_net
    block.writeUInt32LE(vlan ? 42 : 0, off + 32) // tp_vlan_tci
    block.writeUInt16LE(17, off + 48) // sll_family AF_PACKET
    block.writeUInt8(6, off + 48 + 11) // sll_halen
    frame.copy(block, off + mac)
    if (offsets.length) block.writeUInt32LE(off - offsets.at(-1), offsets.at(-1))
    offsets.push(off)
    off += (mac + frame.length + 15) & ~15
  }
  block.writeUInt32LE(1, 0) // version
  block.writeUInt32LE(16, 4) // offset_to_priv
  block.writeUInt32LE(1, 8) // block_status: TP_STATUS_USER
  block.writeUInt32LE(frames.length, 12) // num_pkts
  block.writeUInt32LE(first, 16) // offset_to_first_pkt
  block.writeUInt32LE(off, 20) // blk_len
  block.writeBigUInt64LE(1n, 24) // seq_num
  return block
}

const corpus = mkdtempSync(join(tmpdir(), 'netring-fuzz-'))
const seeds = join(corpus, 'block_walker')
mkdirSync(seeds)
const frame = (n) => Buffer.from(Array.from({ length: n }, (_, i) => i & 0xff))
// The first byte of an input is the fuzz target's flags (bit 0: re-insert VLAN tags).
writeFileSync(join(seeds, 'two-packets'), Buffer.concat([Buffer.from([0]), seedBlock([frame(60), frame(1000)])]))
writeFileSync(join(seeds, 'vlan'), Buffer.concat([Buffer.from([1]), seedBlock([frame(64), frame(64)], { vlan: true })]))

const r = spawnSync(
  'cargo',
  ['+nightly', 'fuzz', 'run', 'block_walker', seeds, '--', `-max_total_time=${seconds}`, '-max_len=8192', '-print_final_stats=1'],
  { cwd: engine, stdio: 'inherit' },
)
process.exit(r.status ?? 1)
