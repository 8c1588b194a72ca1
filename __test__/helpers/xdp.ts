// Frames of every kind for the AF_XDP tests, all from one source MAC so a test recognises its
// own frames among whatever else crosses the link, and a reader that collects them.

import type { OwnedXdpPacket, XdpSocket } from 'netring'

import { frame, tagged, udpFrame } from './net'

/** The source MAC of every test frame (locally administered, nobody's). */
export const XDP_TEST_SRC = Buffer.from('026e72000001', 'hex')

export const fromTest = (data: Buffer) => data.length >= 12 && data.subarray(6, 12).equals(XDP_TEST_SRC)

/** Frames of sizes 60 to 1514, 802.1Q-tagged, ARP, IPv4/UDP and IPv6, each carrying `seq` somewhere unique. */
export function mixedFrames(dst: Buffer, count: number): Buffer[] {
  const sizes = [60, 64, 100, 512, 1000, 1400, 1514]
  return Array.from({ length: count }, (_, i) => {
    switch (i % 5) {
      case 0:
        return frame(dst, XDP_TEST_SRC, sizes[i % sizes.length], i)
      case 1:
        return tagged(frame(dst, XDP_TEST_SRC, sizes[(i * 3) % sizes.length] - 4, i), 100 + (i % 7))
      case 2: {
        const arp = Buffer.alloc(60)
        dst.copy(arp, 0)
        XDP_TEST_SRC.copy(arp, 6)
        arp.writeUInt16BE(0x0806, 12)
        Buffer.from('0001080006040001', 'hex').copy(arp, 14)
        XDP_TEST_SRC.copy(arp, 22)
        arp.writeUInt32BE(0x0a630001, 28)
        arp.writeUInt32BE(i, 38)
        return arp
      }
      case 3: {
        const payload = Buffer.alloc(18 + (i % 400))
        payload.writeUInt32BE(i)
        return udpFrame(dst, XDP_TEST_SRC, 40000, 40001, payload)
      }
      default: {
        const ip6 = Buffer.alloc(40 + 8 + (i % 300))
        ip6[0] = 0x60
        ip6.writeUInt16BE(ip6.length - 40, 4)
        ip6[6] = 59 // no next header
        ip6[7] = 64
        ip6.writeUInt32BE(i, 40)
        const eth = Buffer.alloc(14)
        dst.copy(eth, 0)
        XDP_TEST_SRC.copy(eth, 6)
        eth.writeUInt16BE(0x86dd, 12)
        return Buffer.concat([eth, ip6])
      }
    }
  })
}

/** Owned copies of the test's frames received on `xsk`, until `want` arrived or `timeoutMs` passed. */
export async function collectXdp(xsk: XdpSocket, want: number, timeoutMs = 10_000): Promise<OwnedXdpPacket[]> {
  const got: OwnedXdpPacket[] = []
  try {
    for await (const batch of xsk.batches({ signal: AbortSignal.timeout(timeoutMs) })) {
      for (const p of batch) if (fromTest(p.data)) got.push(p.copy())
      if (got.length >= want) break
    }
  } catch (e) {
    if ((e as Error).name !== 'AbortError') throw e
  }
  return got
}

/** The XDP program attached to `dev` (in `ns`), as `ip -d link` shows it, or undefined. */
export function xdpProgramOf(show: string): string | undefined {
  return /prog\/xdp id (\d+)/.exec(show)?.[1]
}
