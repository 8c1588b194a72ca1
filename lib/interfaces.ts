// The host's network interfaces, read from sysfs (/sys/class/net), which the kernel fills from
// the same netdev structures `ip -d -s link` reads over netlink.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { basename, join } from 'node:path'

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
  /** The kernel driver (module) behind the device, when it has one (`veth`, `virtio_net`). */
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

function driverOf(dir: string): string | undefined {
  for (const link of ['device/driver/module', 'device/driver']) {
    try {
      return basename(readlinkSync(join(dir, link)))
    } catch {
      // no such link
    }
  }
  // Virtual devices have no device/ link; their kind is in the uevent (DEVTYPE) or the name of
  // the rtnl link type, which sysfs does not show: fall back to DEVTYPE.
  return /^DEVTYPE=(.*)$/m.exec(read(dir, 'uevent') ?? '')?.[1]
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
    driver: driverOf(dir),
    rxQueues: queues.filter((q) => q.startsWith('rx-')).length,
    txQueues: queues.filter((q) => q.startsWith('tx-')).length,
    speedMbps: Number.isFinite(speed) && speed > 0 ? speed : undefined,
    rx: counters('rx'),
    tx: counters('tx'),
  }
}
