// Mixed traffic for filter tests: many protocols, addresses, ports and lengths in one list, so
// that an expression accepts some frames and rejects others.

import { ETH_P_EXPERIMENTAL, frame, tagged } from './net'

function checksum(b: Buffer): number {
  let sum = 0
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

const ip4 = (a: string) => Buffer.from(a.split('.').map(Number))

/** Ethernet + IPv4 + `l4` (protocol `proto`). */
export function ipv4Frame(dst: Buffer, src: Buffer, from: string, to: string, proto: number, l4: Buffer, ttl = 64): Buffer {
  const ip = Buffer.alloc(20)
  ip[0] = 0x45
  ip.writeUInt16BE(20 + l4.length, 2)
  ip[8] = ttl
  ip[9] = proto
  ip4(from).copy(ip, 12)
  ip4(to).copy(ip, 16)
  ip.writeUInt16BE(checksum(ip), 10)
  return Buffer.concat([dst, src, Buffer.from([0x08, 0x00]), ip, l4])
}

const ports = (sport: number, dport: number, rest: Buffer) => {
  const h = Buffer.alloc(4)
  h.writeUInt16BE(sport, 0)
  h.writeUInt16BE(dport, 2)
  return Buffer.concat([h, rest])
}

export const udp = (sport: number, dport: number, payload: Buffer) => {
  const len = Buffer.alloc(4)
  len.writeUInt16BE(8 + payload.length, 0)
  return ports(sport, dport, Buffer.concat([len, payload]))
}

export const tcp = (sport: number, dport: number, flags: number, payload = Buffer.alloc(0)) => {
  const rest = Buffer.alloc(16)
  rest[8] = 5 << 4 // data offset
  rest[9] = flags
  rest.writeUInt16BE(65535, 10)
  return ports(sport, dport, Buffer.concat([rest, payload]))
}

export const icmp = (type: number, payload: Buffer) => Buffer.concat([Buffer.from([type, 0, 0, 0, 0, 1, 0, 1]), payload])

function ipv6Frame(dst: Buffer, src: Buffer, next: number, l4: Buffer): Buffer {
  const ip = Buffer.alloc(40)
  ip[0] = 0x60
  ip.writeUInt16BE(l4.length, 4)
  ip[6] = next
  ip[7] = 64
  Buffer.from('fe800000000000000000000000000001', 'hex').copy(ip, 8)
  Buffer.from('20010db8000000000000000000000002', 'hex').copy(ip, 24)
  return Buffer.concat([dst, src, Buffer.from([0x86, 0xdd]), ip, l4])
}

function arpFrame(dst: Buffer, src: Buffer): Buffer {
  const arp = Buffer.from('0001080006040001', 'hex')
  return Buffer.concat([dst, src, Buffer.from([0x08, 0x06]), arp, src, ip4('10.99.0.1'), Buffer.alloc(6), ip4('10.99.0.2')])
}

/** About 120 frames of mixed traffic from `src` to `dst`, each unique. */
export function mixedTraffic(dst: Buffer, src: Buffer): Buffer[] {
  const out: Buffer[] = []
  const pad = (n: number, i: number) => Buffer.alloc(n, i & 0xff)
  for (let i = 0; i < 8; i++) {
    out.push(ipv4Frame(dst, src, '10.99.0.1', '10.99.0.2', 17, udp(5000 + i, 7777, pad(20 + i * 60, i))))
    out.push(ipv4Frame(dst, src, '10.0.0.1', '10.99.0.2', 17, udp(5353, 53, pad(30, i))))
    out.push(ipv4Frame(dst, src, '192.168.1.7', '10.0.0.1', 6, tcp(40000 + i, 443, 0x02)))
    out.push(ipv4Frame(dst, src, '10.99.0.1', '10.99.0.2', 6, tcp(40000 + i, 443, 0x18, pad(100 + i * 150, i))))
    out.push(ipv4Frame(dst, src, '10.99.0.2', '10.99.0.1', 6, tcp(22, 50000 + i, 0x11)))
    out.push(ipv4Frame(dst, src, '172.16.5.5', '10.99.0.2', 6, tcp(6000 + i, 80, 0x10, pad(10, i))))
    out.push(ipv4Frame(dst, src, '10.99.0.1', '10.99.0.2', 1, icmp(8, pad(56, i))))
    out.push(ipv4Frame(dst, src, '10.99.0.2', '10.99.0.1', 1, icmp(0, pad(56 + i, i))))
    out.push(ipv4Frame(dst, src, '10.99.0.1', '10.99.0.2', 1, icmp(3, pad(28, i)), 3))
    out.push(ipv6Frame(dst, src, 17, udp(5000 + i, 53, pad(40, i))))
    out.push(ipv6Frame(dst, src, 58, icmp(128, pad(32 + i, i))))
    out.push(arpFrame(dst, src))
    out.push(frame(dst, src, 60 + i * 100, i, ETH_P_EXPERIMENTAL))
    out.push(tagged(ipv4Frame(dst, src, '10.99.0.1', '10.99.0.2', 17, udp(5000, 53, pad(12, i))), 100))
    out.push(tagged(frame(dst, src, 80, 100 + i), 10))
  }
  // ARP frames repeat exactly; give each a different sender port of a UDP twin instead.
  return out.filter((f, i) => out.findIndex((g) => g.equals(f)) === i)
}
