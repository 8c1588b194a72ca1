// Two hosts that can reach each other only through a bridge: each a namespace behind a veth pair
// whose near end is in ours (the bridge's sides). The hosts keep their default offloads, so
// their stacks hand the veth frames with partial checksums and TCP GSO frames up to 64 KiB.
// Also the small Python peers the bridge tests run inside them.

import type { ExecutionContext } from 'ava'

import { sh, vethPair } from './net'

let subnet = 10 + (process.pid % 200)

export interface Host {
  ns: string
  ip: string
  /** With `ipv6`: the host's IPv6 address. */
  ip6: string
}

export function twoHosts(t: ExecutionContext, options: { ipv6?: boolean } = {}) {
  const left = vethPair(t)
  const right = vethPair(t)
  const n = subnet++
  const net = `10.${n}.${(n * 7) % 250}`
  const hosts = [left, right].map((veth, i): Host => {
    const ip = `${net}.${i + 1}`
    const ip6 = `fd00:6e72:${n.toString(16)}::${i + 1}`
    sh('ip', ['-n', veth.ns, 'addr', 'add', `${ip}/24`, 'dev', veth.far])
    if (options.ipv6) {
      sh('ip', ['netns', 'exec', veth.ns, 'sysctl', '-qw', `net.ipv6.conf.${veth.far}.disable_ipv6=0`])
      sh('ip', ['-n', veth.ns, 'addr', 'add', `${ip6}/64`, 'dev', veth.far, 'nodad'])
    }
    return { ns: veth.ns, ip, ip6 }
  })
  return { a: left.near, b: right.near, left: hosts[0], right: hosts[1] }
}

/**
 * TCP server: argv ip port timeout. Accepts one connection that brings bytes (one that brings
 * none was a connect its client gave up on), replies "<bytes> <sha256>".
 */
export const HASHING_SERVER = `
import hashlib, socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in ip else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port)); s.listen(1); s.settimeout(float(sys.argv[3]))
n = 0
while n == 0:
    c, _ = s.accept(); c.settimeout(20)
    h = hashlib.sha256()
    try:
        while True:
            d = c.recv(1 << 20)
            if not d: break
            h.update(d); n += len(d)
    except ConnectionResetError:
        n = 0
    if n == 0: c.close()
c.sendall(f"{n} {h.hexdigest()}".encode()); c.close()
`

/**
 * TCP client: argv ip port size deadline [fill]. Sends size pseudo-random bytes (or the byte
 * 'fill' repeated) and prints "<server's answer> | <bytes> <sha256 of what it sent> | mss <MSS>",
 * or "unreachable". Each connect attempt lasts until the deadline: the kernel retries a lost
 * SYN itself, and only a refused connect is tried again.
 */
export const HASHING_CLIENT = `
import hashlib, random, socket, sys, time
ip, port, size, deadline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), time.time() + float(sys.argv[4])
payload = bytes([int(sys.argv[5])]) * size if len(sys.argv) > 5 else random.Random(size).randbytes(size)
while True:
    try:
        c = socket.create_connection((ip, port), timeout=max(0.1, deadline - time.time())); break
    except OSError:
        if time.time() > deadline: print("unreachable"); sys.exit(0)
        time.sleep(0.1)
mss = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
c.settimeout(20); c.sendall(payload); c.shutdown(socket.SHUT_WR)
answer = c.recv(1024).decode()
print(f"{answer} | {size} {hashlib.sha256(payload).hexdigest()} | mss {mss}")
`

/**
 * UDP echo: argv ip idle. Echoes every datagram until one says "end" or none came for `idle`
 * seconds (the client's verdict is what counts; a lost "end" must not fail the test).
 */
export const UDP_ECHO_ALL = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 5001)); s.settimeout(float(sys.argv[2]))
try:
    while True:
        d, peer = s.recvfrom(65535)
        if d == b"end": break
        s.sendto(d, peer)
except socket.timeout:
    pass
`

/**
 * UDP client: argv ip deadline sizes... Sends a datagram of each size and waits for its echo
 * (sent again every 0.5 s until the deadline), prints "ok <sizes echoed>" or "lost <size>".
 */
export const UDP_SIZES = `
import random, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
deadline = time.time() + float(sys.argv[2])
done = []
for size in map(int, sys.argv[3:]):
    d = random.Random(size).randbytes(size)
    echoed = False
    while time.time() < deadline:
        s.sendto(d, (sys.argv[1], 5001))
        try:
            echoed = s.recvfrom(65535)[0] == d
        except socket.timeout:
            pass
        if echoed: break
    if not echoed: print("lost", size); break
    done.append(size)
else:
    print("ok", *done)
for _ in range(3): s.sendto(b"end", (sys.argv[1], 5001))
`

/**
 * ping (iputils is not always installed): argv ip count deadline. Sends ICMP echo requests from
 * a raw socket, one at a time, each retried until its reply or the deadline; prints
 * "replies <n>".
 */
export const PING = `
import os, socket, struct, sys, time
def checksum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s & 0xffff) + (s >> 16); s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(0.3)
ident, replies, deadline = os.getpid() & 0xffff, 0, time.time() + float(sys.argv[3])
for seq in range(int(sys.argv[2])):
    body = struct.pack("!HH", ident, seq) + b"netring-ping" + bytes(range(32))
    request = struct.pack("!BBH", 8, 0, checksum(struct.pack("!BBH", 8, 0, 0) + body)) + body
    got = False
    while not got and time.time() < deadline:
        s.sendto(request, (sys.argv[1], 0))
        try:
            while not got:
                d = s.recv(2048)
                icmp = d[(d[0] & 15) * 4:]
                got = icmp[0] == 0 and icmp[4:] == body
        except socket.timeout:
            pass
    replies += got
print("replies", replies)
`

export const python = (script: string, ...args: string[]) => ['python3', '-c', script, ...args]
