// Internet checksums of test frames, computed here in full, independent of netring's own code:
// a transport checksum as a receiver checks it, the partial one a sender leaves to the kernel
// with offload metadata (the pseudo-header sum), and the kernel's completion of it.

/** One's-complement sum of `bytes` as big-endian 16-bit words, added to `start`, folded. */
export function internetSum(bytes: Uint8Array, start = 0): number {
  let s = start
  for (let i = 0; i + 1 < bytes.length; i += 2) s += (bytes[i]! << 8) | bytes[i + 1]!
  if (bytes.length % 2) s += bytes[bytes.length - 1]! << 8
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16)
  return s
}

/** Where an IPv4 TCP or UDP frame's (optionally 802.1Q-tagged) transport header and checksum are. */
export function transportOf(f: Buffer): { ip: number; l4: number; field: number; proto: number } {
  const ip = f.readUInt16BE(12) === 0x8100 ? 18 : 14
  const l4 = ip + (f[ip]! & 0x0f) * 4
  const proto = f[ip + 9]!
  return { ip, l4, proto, field: l4 + (proto === 6 ? 16 : 6) }
}

/** The IPv4 pseudo-header sum of the frame's transport segment. */
function pseudoSum(f: Buffer): number {
  const { ip, l4, proto } = transportOf(f)
  const l4Len = f.readUInt16BE(ip + 2) - (l4 - ip)
  return internetSum(f.subarray(ip + 12, ip + 20), proto + l4Len)
}

/** A copy of an IPv4 TCP/UDP frame with its transport checksum filled in, as on the wire. */
export function withChecksum(f: Buffer): Buffer {
  const c = Buffer.from(f)
  const { ip, l4, field } = transportOf(c)
  c.writeUInt16BE(0, field)
  const end = ip + c.readUInt16BE(ip + 2)
  const sum = ~internetSum(c.subarray(l4, end), pseudoSum(c)) & 0xffff
  c.writeUInt16BE(sum, field)
  return c
}

/** A copy with the checksum left partial, as a sender with checksum offload leaves it. */
export function withPartialChecksum(f: Buffer): Buffer {
  const c = Buffer.from(f)
  c.writeUInt16BE(pseudoSum(c), transportOf(c).field)
  return c
}

/** A copy with a partial checksum completed as the kernel does: summed from `csumStart`, stored at `csumStart + csumOffset`. */
export function completed(f: Buffer, offload: { csumStart: number; csumOffset: number }): Buffer {
  const c = Buffer.from(f)
  c.writeUInt16BE(~internetSum(c.subarray(offload.csumStart)) & 0xffff, offload.csumStart + offload.csumOffset)
  return c
}
