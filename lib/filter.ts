// pcap-filter expressions, compiled by the system's libpcap (loaded at run time).

import { callNative, NetringError } from './errors'
import { native, type Binding } from './native'
import { filterOption, type BpfInstruction } from './options'
import type { PacketInfo } from './packet'

/**
 * Compiles a pcap-filter expression (`'tcp port 443'`) with the system's libpcap for Ethernet,
 * exactly as `tcpdump -dd -s <snapLen>` prints it. `snapLen` defaults to libpcap's maximum
 * (262144), tcpdump's default. Throws `EINVAL` (option `filter`) with libpcap's message for a bad
 * expression, and `ENOENT` naming the package to install when libpcap is missing.
 */
export function compileFilter(expression: string, snapLen?: number): BpfInstruction[] {
  if (typeof expression !== 'string') throw NetringError.invalidOption('filter', 'must be a pcap-filter expression')
  if (snapLen !== undefined && !(Number.isInteger(snapLen) && snapLen >= 1 && snapLen <= 0xffffffff)) {
    throw NetringError.invalidOption('snapLen', `must be an integer from 1, got ${String(snapLen)}`)
  }
  return callNative(() => native.compileFilter(expression, snapLen))
}

/** Whether the system's libpcap can be loaded; only string filters need it. */
export function libpcapAvailable(): boolean {
  return native.libpcapAvailable()
}

/**
 * A filter applied in user space with the kernel's semantics, for packets that come from
 * somewhere else than a capture (a capture file, another process). Any of the three forms.
 */
export class FilterProgram {
  readonly #native: Binding.NativeFilterProgram

  constructor(filter: string | BpfInstruction[], snapLen?: number) {
    const checked = filterOption(filter)
    if (checked === null) throw NetringError.invalidOption('filter', 'must be a filter, not null')
    this.#native = callNative(() => new native.NativeFilterProgram(checked, snapLen))
  }

  /** Whether the filter accepts the packet (its `data`, and `originalLength` for `len`). */
  matches(packet: Pick<PacketInfo, 'data' | 'originalLength'>): boolean {
    return this.#native.matches(packet.data, packet.originalLength)
  }
}
