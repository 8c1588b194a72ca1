// The Capture options object: its type (with the defaults, quoted from the engine's profile
// table in crates/engine/src/afpacket/config.rs) and its type checks. Values (power-of-two block
// sizes, group ranges, BPF programs, ...) are checked by the engine, so the rules live once.

import { NetringError } from './errors'
import { countLimit, describe, integer, timeoutMs } from './numbers'
import { native, type Binding } from './native'

// Each vocabulary is defined once, in the binding (src/vocabulary.rs), which exports it as an
// enum object; the lists the checks use and the string types here are derived from it.
const PROFILES: string[] = Object.values(native.Profile)
export const FANOUT_MODES: string[] = Object.values(native.FanoutMode)
const FANOUT_FLAGS: string[] = Object.values(native.FanoutFlag)
const TIMESTAMP_SOURCES: string[] = Object.values(native.TimestampSource)
const XDP_MODES: string[] = Object.values(native.XdpMode)
const XDP_ATTACH_MODES: string[] = Object.values(native.XdpAttach)
export type Profile = `${Binding.Profile}`
export type FanoutMode = `${Binding.FanoutMode}`
export type FanoutFlag = `${Binding.FanoutFlag}`
export type TimestampSource = `${Binding.TimestampSource}`

/** One classic BPF instruction, as `tcpdump -dd` prints it. */
export interface BpfInstruction {
  code: number
  jt: number
  jf: number
  k: number
}

export interface FanoutOptions {
  /** Fanout group id, 0 to 65535; sockets with the same id on the same interface share traffic. */
  group: number
  /** How packets are spread over the group's sockets. */
  mode: FanoutMode
  flags?: FanoutFlag[]
}

export interface CaptureOptions {
  /**
   * Ring shape and timeout defaults:
   * - `'default'`: 16 blocks × 1 MiB, frameSize 2048, blockTimeoutMs 10
   * - `'high-throughput'`: 64 × 4 MiB, 2048, 50 ms
   * - `'low-latency'`: 32 × 256 KiB, 2048, 1 ms
   * - `'low-memory'`: 4 × 128 KiB, 2048, 10 ms
   * - `'jumbo'`: 32 × 4 MiB, frameSize 65536, 10 ms
   * @default 'default'
   */
  profile?: Profile
  /** Receive frames addressed to other hosts too (PACKET_MR_PROMISC membership). @default false */
  promiscuous?: boolean
  /** Bytes per ring block: a power of two and a multiple of the page size. @default from profile */
  blockSize?: number
  /** Blocks in the ring (fewer are used if the kernel reports ENOMEM; see `info`). @default from profile */
  blockCount?: number
  /** Frame size: a multiple of 16, at least the TPACKET_V3 header. @default from profile */
  frameSize?: number
  /** Capture at most this many bytes of each packet (done in the kernel, by the BPF filter). @default whole packet */
  snapLen?: number
  /** Milliseconds after which the kernel hands over a block that is not full, 1 to 60000. @default from profile */
  blockTimeoutMs?: number
  /** Ask the kernel to fill `rxhash` for every packet. @default false */
  fillRxhash?: boolean
  /** Do not capture packets this host sends (PACKET_IGNORE_OUTGOING). @default false */
  ignoreOutgoing?: boolean
  /** Busy-poll the device for this many microseconds before sleeping (SO_BUSY_POLL). @default 0 */
  busyPollUs?: number
  /** Timestamp source: hardware timestamps only where the NIC and driver provide them. @default 'software' */
  timestampSource?: TimestampSource
  /** Join a fanout group (the socket is bound first, as the kernel requires). @default none */
  fanout?: FanoutOptions
  /**
   * A pcap-filter expression (`'tcp port 443'`, compiled by the system's libpcap for Ethernet
   * with `snapLen`), or a classic BPF program: instructions as printed by `tcpdump -dd`, or that
   * text itself. @default accept all
   */
  filter?: BpfInstruction[] | string
  /**
   * Write the 802.1Q tag the kernel strips into metadata back into `data`, so frames read as
   * they were on the wire (still zero-copy: room is reserved in front of each frame). The tag is
   * in `vlanTci`/`vlanTpid` either way.
   * @default true
   */
  reinsertVlan?: boolean
  /**
   * Receive each frame's offload metadata (the kernel's virtio-net header, PACKET_VNET_HDR) as
   * `packet.offload`: whether it is a GSO super-frame and whether its checksum is still to be
   * filled in. Without it packets carry no `offload` and nothing else changes.
   * @default false
   */
  offloadInfo?: boolean
}

export interface InjectorOptions {
  /** Bytes per TX ring frame, a multiple of 16 from 64; a frame holds frameSize - 48 bytes of data. @default 2048 */
  frameSize?: number
  /** Frames in the TX ring (rounded up to whole blocks; `info.frameCount` says how many). @default 1024 */
  frameCount?: number
  /** Hand frames straight to the driver, skipping the qdisc layer (PACKET_QDISC_BYPASS). @default false */
  qdiscBypass?: boolean
  /**
   * Send frames with offload metadata (`send(frame, { offload })`, `slot.send(length, { offload })`):
   * the kernel fills in partial checksums and cuts GSO frames of up to 64 KiB into segments.
   * Frames larger than a slot leave through a second socket, one `sendmsg()` each.
   * Each slot then holds 10 bytes less (`info.slotCapacity`).
   * @default false
   */
  offload?: boolean
}

export type Check = (value: unknown, option: string) => void

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

export const boolean: Check = (v, o) => {
  if (typeof v !== 'boolean') throw NetringError.invalidOption(o, `must be a boolean, got ${describe(v)}`)
}

export const u32: Check = (v, o) => {
  integer(v, o)
}

export const oneOf =
  (...allowed: string[]): Check =>
  (v, o) => {
    if (typeof v !== 'string' || !allowed.includes(v)) {
      throw NetringError.invalidOption(o, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}; got ${describe(v)}`)
    }
  }

const fanout: Check = (v, o) => {
  if (!isObject(v)) throw NetringError.invalidOption(o, `must be an object { group, mode, flags? }, got ${describe(v)}`)
  checkKeys(v, o, { group: u32, mode: oneOf(...FANOUT_MODES), flags: fanoutFlags })
  if (v.group === undefined) throw NetringError.invalidOption(`${o}.group`, 'is required')
  if (v.mode === undefined) throw NetringError.invalidOption(`${o}.mode`, 'is required')
}

export const fanoutFlags: Check = (v, o) => {
  if (!Array.isArray(v)) throw NetringError.invalidOption(o, `must be an array of flag names, got ${describe(v)}`)
  const flag = oneOf(...FANOUT_FLAGS)
  v.forEach((f, i) => flag(f, `${o}[${i}]`))
}

/** Checks a filter in any of its forms (for `setFilter`, whose `null` means accept all). */
export function filterOption(v: unknown): string | BpfInstruction[] | null {
  if (v !== null) filter(v, 'filter')
  return v as string | BpfInstruction[] | null
}

const filter: Check = (v, o) => {
  if (typeof v === 'string') return
  if (!Array.isArray(v)) {
    throw NetringError.invalidOption(o, `must be a pcap-filter expression, the text of \`tcpdump -dd\` or an array of { code, jt, jf, k }, got ${describe(v)}`)
  }
  v.forEach((insn, i) => {
    if (!isObject(insn)) throw NetringError.invalidOption(`${o}[${i}]`, `must be an object { code, jt, jf, k }, got ${describe(insn)}`)
    for (const field of ['code', 'jt', 'jf', 'k']) {
      if (insn[field] === undefined) throw NetringError.invalidOption(`${o}[${i}].${field}`, 'is required')
      if (typeof insn[field] !== 'number') {
        throw NetringError.invalidOption(`${o}[${i}].${field}`, `must be a number, got ${describe(insn[field])}`)
      }
    }
  })
}

const CAPTURE_OPTIONS: Record<keyof CaptureOptions, Check> = {
  profile: oneOf(...PROFILES),
  promiscuous: boolean,
  blockSize: u32,
  blockCount: u32,
  frameSize: u32,
  snapLen: u32,
  blockTimeoutMs: u32,
  fillRxhash: boolean,
  ignoreOutgoing: boolean,
  busyPollUs: u32,
  timestampSource: oneOf(...TIMESTAMP_SOURCES),
  fanout,
  filter,
  reinsertVlan: boolean,
  offloadInfo: boolean,
}

const INJECTOR_OPTIONS: Record<keyof InjectorOptions, Check> = {
  frameSize: u32,
  frameCount: u32,
  qdiscBypass: boolean,
  offload: boolean,
}

function checkKeys(object: Record<string, unknown>, prefix: string, checks: Record<string, Check>): void {
  for (const [key, value] of Object.entries(object)) {
    const name = prefix ? `${prefix}.${key}` : key
    const check = checks[key]
    if (!check) throw NetringError.invalidOption(name, `unknown option (known: ${Object.keys(checks).join(', ')})`)
    if (value !== undefined) check(value, name)
  }
}

/** Checks an interface name argument. */
export function interfaceName(v: unknown, option = 'interface'): string {
  if (typeof v !== 'string' || v.length === 0) throw NetringError.invalidOption(option, `must be an interface name, got ${describe(v)}`)
  return v
}

/** Checks the types of a Capture options object and hands it on in the binding's shape. */
export function captureOptions(options: unknown, prefix = ''): Binding.NativeCaptureOptions {
  return checkOptions(options, prefix, CAPTURE_OPTIONS) as Binding.NativeCaptureOptions
}

/** Checks the types of an Injector options object. */
export function injectorOptions(options: unknown, prefix = ''): Binding.NativeInjectorOptions {
  return checkOptions(options, prefix, INJECTOR_OPTIONS) as Binding.NativeInjectorOptions
}

/** Checks that `options` is undefined or an object whose keys all have a check, and checks them. */
export function checkOptions(options: unknown, prefix: string, checks: Record<string, Check>): Record<string, unknown> {
  if (options === undefined) return {}
  const copy = readOnce(options)
  if (!isObject(copy)) throw NetringError.invalidOption(prefix || 'options', `must be an object, got ${describe(options)}`)
  checkKeys(copy, prefix, checks)
  return copy
}

/**
 * A plain copy of an options object, every value read once (every options object goes through
 * `checkOptions`, which checks and returns this copy): the checks and the binding then
 * see the same values (a getter could otherwise answer the check with one number and the
 * binding with another). Options nest three levels (`filter[i].code`); deeper is left as it
 * is, for the checks to refuse, so a cycle cannot recurse forever.
 */
export function readOnce(v: unknown, depth = 0): unknown {
  if (depth > 3) return v
  if (Array.isArray(v)) return Array.from(v, (x) => readOnce(x, depth + 1))
  if (isObject(v) && [Object.prototype, null].includes(Object.getPrototypeOf(v))) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, readOnce(x, depth + 1)]))
  }
  return v
}

/** Checks a plain options object of an iteration method (`{ limit, timeoutMs, signal }`). */
export function iterationOptions<T extends object>(options: unknown, method: string, known: readonly (keyof T & string)[]): T {
  const checks: Record<string, Check> = {}
  for (const key of known) checks[key] = key === 'signal' ? abortSignal : key === 'timeoutMs' ? timeout : key === 'highWaterMark' ? u32 : key === 'batches' ? boolean : count
  const checked = { ...checkOptions(options, method, checks) }
  // A timeout past any real wait is no timeout: the iterators see `undefined`.
  if ('timeoutMs' in checked) checked.timeoutMs = timeoutMs(checked.timeoutMs, `${method}.timeoutMs`)
  return checked as T
}

const abortSignal: Check = (v, o) => {
  if (!(v instanceof AbortSignal)) throw NetringError.invalidOption(o, `must be an AbortSignal, got ${describe(v)}`)
}

/** A count or a timeout: a number, not NaN, at least 0 (Infinity is no limit). */
export const nonNegative: Check = (v, o) => {
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) {
    throw NetringError.invalidOption(o, `must be a non-negative number, got ${describe(v)}`)
  }
}

const timeout: Check = (v, o) => {
  timeoutMs(v, o)
}

const count: Check = (v, o) => {
  countLimit(v, o)
}

// ---- XdpSocket ----

export type XdpMode = `${Binding.XdpMode}`
export type XdpAttachMode = `${Binding.XdpAttach}`

export interface XdpOptions {
  /** The RX (and TX) queue of the interface to bind to. @default 0 */
  queue?: number
  /** Directions served; the UMEM is split half and half for 'rxtx' (a socket that only receives gets twice the RX frames with 'rx'). @default 'rxtx' */
  mode?: XdpMode
  /** How netring's XDP program is attached: driver (native) where supported, else generic. @default 'auto' */
  attach?: XdpAttachMode
  /** Zero-copy: true requires it (EOPNOTSUPP where the driver lacks it, e.g. veth), false forces copy mode. @default 'auto' */
  zeroCopy?: 'auto' | boolean
  /** Bind with XDP_USE_NEED_WAKEUP: the kernel is kicked only when it asks. @default true */
  needWakeup?: boolean
  /** Bytes per UMEM frame, 2048 or 4096. @default 2048 */
  frameSize?: number
  /** Frames in the UMEM (half RX, half TX in 'rxtx' mode). @default 4096 */
  frameCount?: number
  /** Entries of each of the four rings (fill, completion, RX, TX), a power of two. @default 2048, or the RX frames if more (4096 for 'rx') */
  ringSize?: number
  /** Bytes kept free in front of each received packet (a multiple of 8). @default 0 */
  headroom?: number
  /**
   * The XDP program that steers packets into the socket:
   * - `'builtin'`: netring's own, attached with a BPF link that cannot outlive the process;
   * - `'none'`: no program (TX only);
   * - `{ xskMap }`: your own program, already attached; netring only inserts its socket at its
   *   queue in this XSKMAP, given as a pinned path or as a descriptor (never closed by netring);
   * - `{ fd, xskMap? }`: your own XDP program by descriptor: netring attaches it with a BPF link
   *   (shared and released like the built-in one) and joins its one XSKMAP, or `xskMap`.
   * @default 'builtin' ('none' for mode 'tx')
   */
  program?: 'builtin' | 'none' | { xskMap: string | number } | { fd: number; xskMap?: string | number }
  /** Busy-poll the device for this many microseconds (SO_BUSY_POLL). @default 0 */
  busyPollUs?: number
  /** Most packets handed out per batch (at most ringSize). @default 256, or ringSize if smaller */
  batchSize?: number
}

/** A file descriptor number: an integer >= 0 (whether it is open, and what it is, the engine checks). */
const descriptor: Check = (v, o) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0x7fff_ffff) {
    throw NetringError.invalidOption(o, `must be a file descriptor (an integer >= 0), got ${describe(v)}`)
  }
}

const xdpProgram: Check = (v, o) => {
  if (v === 'builtin' || v === 'none') return
  if (!isObject(v)) throw NetringError.invalidOption(o, `must be 'builtin', 'none', { xskMap } or { fd, xskMap? }, got ${describe(v)}`)
  checkKeys(v, o, {
    fd: descriptor,
    xskMap: (p, name) => {
      if (typeof p === 'number') return descriptor(p, name)
      if (typeof p !== 'string' || p.length === 0) throw NetringError.invalidOption(name, `must be a pinned path or a file descriptor, got ${describe(p)}`)
    },
  })
  if (v.fd === undefined && v.xskMap === undefined) throw NetringError.invalidOption(`${o}.xskMap`, 'is required (or program.fd)')
}

const XDP_OPTIONS: Record<keyof XdpOptions, Check> = {
  queue: u32,
  mode: oneOf(...XDP_MODES),
  attach: oneOf(...XDP_ATTACH_MODES),
  zeroCopy: (v, o) => {
    if (v !== 'auto' && typeof v !== 'boolean') throw NetringError.invalidOption(o, `must be 'auto', true or false, got ${describe(v)}`)
  },
  needWakeup: boolean,
  frameSize: u32,
  frameCount: u32,
  ringSize: u32,
  headroom: u32,
  program: xdpProgram,
  busyPollUs: u32,
  batchSize: u32,
}

/** Checks the types of an XdpSocket options object and hands it on in the binding's shape. */
export function xdpOptions(options: unknown): Binding.NativeXdpOptions {
  const o = checkOptions(options, '', XDP_OPTIONS) as XdpOptions
  const { zeroCopy, program, mode, attach, ...rest } = o
  return {
    ...rest,
    mode: mode as Binding.XdpMode | undefined,
    attach: attach as Binding.XdpAttach | undefined,
    zeroCopy: zeroCopy === undefined ? undefined : native.XdpZeroCopy[zeroCopy === 'auto' ? 'Auto' : zeroCopy ? 'On' : 'Off'],
    program: typeof program === 'string' ? program : undefined,
    programFd: typeof program === 'object' && 'fd' in program ? program.fd : undefined,
    xskMap: typeof program === 'object' ? program.xskMap : undefined,
  }
}
