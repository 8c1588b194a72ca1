// One line per packet, in the shape of tcpdump's default output: time, direction, then the
// protocols from the link layer up, and the length.

import type { PacketInfo } from '../packet'

export interface LineOptions {
  /** Print the link-level header (tcpdump -e). */
  link: boolean
  /** Print the date too (tcpdump -tttt). */
  date: boolean
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0')

export function formatTime(sec: number, nsec: number, date: boolean): string {
  const d = new Date(sec * 1000)
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(Math.floor(nsec / 1000), 6)}`
  return date ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}` : time
}

const mac = (b: Buffer, at: number) => [...b.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':')
const ipv4 = (b: Buffer, at: number) => [...b.subarray(at, at + 4)].join('.')

function ipv6(b: Buffer, at: number): string {
  const words = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(at + 2 * i).toString(16))
  // Shorten the longest run of zero words to '::', as inet_ntop does.
  let best = [-1, 0]
  for (let i = 0; i < 8; ) {
    if (words[i] !== '0') {
      i++
      continue
    }
    let j = i
    while (j < 8 && words[j] === '0') j++
    if (j - i > best[1] && j - i > 1) best = [i, j - i]
    i = j
  }
  if (best[0] < 0) return words.join(':')
  return `${words.slice(0, best[0]).join(':')}::${words.slice(best[0] + best[1]).join(':')}`
}

const ETHERTYPES: Record<number, string> = { 0x0800: 'IPv4', 0x86dd: 'IPv6', 0x0806: 'ARP', 0x8100: '802.1Q', 0x88a8: '802.1Q-QinQ' }
const DIRECTION: Record<PacketInfo['direction'], string> = {
  host: 'In',
  broadcast: 'B',
  multicast: 'M',
  otherhost: 'P',
  outgoing: 'Out',
}

const TCP_FLAGS: [number, string][] = [
  [0x02, 'S'],
  [0x01, 'F'],
  [0x04, 'R'],
  [0x08, 'P'],
  [0x20, 'U'],
  [0x40, 'E'],
  [0x80, 'W'],
]

/** `id N, seq N, ` of an echo request or reply. */
function echoIds(b: Buffer, at: number, echo: boolean): string {
  return echo && b.length >= at + 8 ? `id ${b.readUInt16BE(at + 4)}, seq ${b.readUInt16BE(at + 6)}, ` : ''
}

function transport(b: Buffer, at: number, proto: number, src: string, dst: string, payloadLen: number): string {
  if ((proto === 6 || proto === 17) && b.length >= at + 4) {
    const sport = b.readUInt16BE(at)
    const dport = b.readUInt16BE(at + 2)
    if (proto === 17) return `${src}.${sport} > ${dst}.${dport}: UDP, length ${Math.max(0, payloadLen - 8)}`
    if (b.length < at + 14) return `${src}.${sport} > ${dst}.${dport}: tcp`
    const f = b[at + 13]
    let flags = TCP_FLAGS.filter(([bit]) => f & bit).map(([, c]) => c).join('')
    if (f & 0x10) flags += '.'
    const hdr = (b[at + 12] >> 4) * 4
    return `${src}.${sport} > ${dst}.${dport}: Flags [${flags || 'none'}], length ${Math.max(0, payloadLen - hdr)}`
  }
  if (proto === 1 && b.length > at) {
    const kinds: Record<number, string> = { 0: 'echo reply', 8: 'echo request', 3: 'unreachable', 11: 'time exceeded' }
    return `${src} > ${dst}: ICMP ${kinds[b[at]] ?? `type ${b[at]}`}, ${echoIds(b, at, b[at] === 0 || b[at] === 8)}length ${payloadLen}`
  }
  if (proto === 58 && b.length > at) {
    const kinds: Record<number, string> = { 128: 'echo request', 129: 'echo reply', 135: 'neighbor solicitation', 136: 'neighbor advertisement' }
    return `${src} > ${dst}: ICMP6, ${kinds[b[at]] ?? `type ${b[at]}`}, ${echoIds(b, at, b[at] === 128 || b[at] === 129)}length ${payloadLen}`
  }
  return `${src} > ${dst}: ip-proto-${proto} ${payloadLen}`
}

function network(b: Buffer, at: number, type: number): string {
  if (type === 0x0800 && b.length >= at + 20) {
    const ihl = (b[at] & 0xf) * 4
    const total = b.readUInt16BE(at + 2)
    return `IP ${transport(b, at + ihl, b[at + 9], ipv4(b, at + 12), ipv4(b, at + 16), total - ihl)}`
  }
  if (type === 0x86dd && b.length >= at + 40) {
    return `IP6 ${transport(b, at + 40, b[at + 6], ipv6(b, at + 8), ipv6(b, at + 24), b.readUInt16BE(at + 4))}`
  }
  if (type === 0x0806 && b.length >= at + 28) {
    const op = b.readUInt16BE(at + 6)
    if (op === 1) return `ARP, Request who-has ${ipv4(b, at + 24)} tell ${ipv4(b, at + 14)}, length ${b.length - at}`
    if (op === 2) return `ARP, Reply ${ipv4(b, at + 14)} is-at ${mac(b, at + 8)}, length ${b.length - at}`
    return `ARP, op ${op}, length ${b.length - at}`
  }
  return `ethertype ${ETHERTYPES[type] ?? 'Unknown'} (0x${type.toString(16).padStart(4, '0')}), length ${b.length}`
}

export function formatPacket(p: PacketInfo, o: LineOptions): string {
  const b = p.data
  const time = formatTime(p.timestamp.sec, p.timestamp.nsec, o.date)
  if (b.length < 14) return `${time} ${DIRECTION[p.direction]} [|ether], length ${p.originalLength}`
  let type = b.readUInt16BE(12)
  let at = 14
  let link = ''
  if (o.link) link = `${mac(b, 6)} > ${mac(b, 0)}, ethertype ${ETHERTYPES[type] ?? `0x${type.toString(16)}`} (0x${type.toString(16).padStart(4, '0')}), length ${p.originalLength}: `
  let vlan = ''
  while ((type === 0x8100 || type === 0x88a8) && b.length >= at + 4) {
    const tci = b.readUInt16BE(at)
    vlan += `vlan ${tci & 0xfff}, p ${tci >> 13}, `
    type = b.readUInt16BE(at + 2)
    at += 4
  }
  return `${time} ${DIRECTION[p.direction]} ${link}${vlan}${network(b, at, type)}`
}
