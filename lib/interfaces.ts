// The host's network interfaces, read from sysfs (/sys/class/net), which the kernel fills from
// the same netdev structures `ip -d -s link` reads over netlink; the driver is asked of the
// device (ETHTOOL_GDRVINFO), since virtual devices have no driver link in sysfs.

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

import { native } from './native'

export interface InterfaceCounters {
  packets: number
  bytes: number
  errors: number
  drops: number
}

export interface InterfaceInfo {
  name: string
  index: number
  mtu: number
  /** `aa:bb:cc:dd:ee:ff`; '' for interfaces without a link-layer address. */
  mac: string
  flags: { up: boolean; running: boolean; promiscuous: boolean; loopback: boolean }
  /** RFC 2863 state as the kernel reports it: 'up', 'down', 'unknown', ... */
  operstate: string
  /** The driver behind the device as `ethtool -i` names it (`veth`, `virtio_net`), when it says. */
  driver: string | undefined
  rxQueues: number
  txQueues: number
  /** Link speed in Mbit/s, where the driver knows it. */
  speedMbps: number | undefined
  rx: InterfaceCounters
  tx: InterfaceCounters
}

// Interface flags (include/uapi/linux/if.h).
const IFF_UP = 0x1
const IFF_LOOPBACK = 0x8
const IFF_PROMISC = 0x100

const SYSFS = '/sys/class/net'

function read(dir: string, file: string): string | undefined {
  try {
    return readFileSync(join(dir, file), 'utf8').trim()
  } catch {
    return undefined // e.g. `speed` of a virtual device: EINVAL
  }
}

function num(dir: string, file: string): number {
  return Number(read(dir, file) ?? 0)
}

/** The driver, asked of the device itself (`ETHTOOL_GDRVINFO`, as `ethtool -i`). */
function driverOf(name: string): string | undefined {
  try {
    return native.interfaceDriver(name) ?? undefined
  } catch {
    return undefined // went away meanwhile
  }
}

/** Every interface of this network namespace, in index order. */
export function interfaces(): InterfaceInfo[] {
  return readdirSync(SYSFS)
    .map((name) => describeInterface(name))
    .filter((i): i is InterfaceInfo => i !== undefined)
    .sort((a, b) => a.index - b.index)
}

function describeInterface(name: string): InterfaceInfo | undefined {
  const dir = join(SYSFS, name)
  const index = read(dir, 'ifindex')
  if (index === undefined) return undefined // went away meanwhile
  const flags = parseInt(read(dir, 'flags') ?? '0', 16)
  const queues = (() => {
    try {
      return readdirSync(join(dir, 'queues'))
    } catch {
      return []
    }
  })()
  const speed = Number(read(dir, 'speed'))
  const counters = (dir2: 'rx' | 'tx'): InterfaceCounters => ({
    packets: num(dir, `statistics/${dir2}_packets`),
    bytes: num(dir, `statistics/${dir2}_bytes`),
    errors: num(dir, `statistics/${dir2}_errors`),
    drops: num(dir, `statistics/${dir2}_dropped`),
  })
  const addrLen = num(dir, 'addr_len')
  const operstate = read(dir, 'operstate') ?? 'unknown'
  const up = (flags & IFF_UP) !== 0
  return {
    name,
    index: Number(index),
    mtu: num(dir, 'mtu'),
    mac: addrLen > 0 ? (read(dir, 'address') ?? '') : '',
    flags: {
      up,
      // sysfs shows the flags as set, without IFF_RUNNING, which the kernel derives
      // (dev_get_flags): administratively up and operationally up or unknown.
      running: up && (operstate === 'up' || operstate === 'unknown'),
      promiscuous: (flags & IFF_PROMISC) !== 0,
      loopback: (flags & IFF_LOOPBACK) !== 0,
    },
    operstate,
    driver: driverOf(name),
    rxQueues: queues.filter((q) => q.startsWith('rx-')).length,
    txQueues: queues.filter((q) => q.startsWith('tx-')).length,
    speedMbps: Number.isFinite(speed) && speed > 0 ? speed : undefined,
    rx: counters('rx'),
    tx: counters('tx'),
  }
}
