// netring demo: live capture on an interface (default: lo) for a few seconds, with UDP traffic
// of its own over loopback so there is something to see. Prints packets/s, Mbit/s and drops
// every half second, then a summary.
//
//   npm run demo                  # lo, 4 seconds
//   npm run demo -- eth0 10       # another interface, 10 seconds (no traffic is generated there)

import dgram from 'node:dgram'

import { Capture } from 'netring'

const iface = process.argv[2] ?? 'lo'
const seconds = Number(process.argv[3] ?? 4)
const generate = iface === 'lo'

const cap = Capture.open(iface)
const info = cap.info
console.log(
  `netring demo: capturing on ${iface} for ${seconds} s ` +
    `(ring ${info.blockCount} × ${info.blockSize / 1024} KiB${info.locked ? ', locked' : ''}${info.copyMode ? ', copy mode' : ', zero-copy'})` +
    (generate ? ', sending UDP to 127.0.0.1 from this process' : ''),
)

// Traffic: bursts of datagrams to a port nobody listens on, over loopback only, bounded in time.
let sent = 0
let sending = generate
const socket = dgram.createSocket('udp4')
const payload = Buffer.alloc(512, 0x6e)
function burst() {
  if (!sending) return
  for (let i = 0; i < 32; i++) socket.send(payload, 9, '127.0.0.1', () => sent++)
  setImmediate(burst)
}
if (generate) burst()

let packets = 0
let bytes = 0
let last = { t: performance.now(), packets: 0, bytes: 0 }
const tty = process.stdout.isTTY
const ticker = setInterval(() => {
  const now = performance.now()
  const dt = (now - last.t) / 1000
  const pps = (packets - last.packets) / dt
  const mbps = ((bytes - last.bytes) * 8) / dt / 1e6
  const line = `${(pps / 1000).toFixed(1).padStart(8)} kpps ${mbps.toFixed(1).padStart(8)} Mbit/s   drops ${cap.stats().drops}`
  if (tty) process.stdout.write(`\r${line}   `)
  else console.log(line)
  last = { t: now, packets, bytes }
}, 500)

const started = performance.now()
const signal = AbortSignal.timeout(seconds * 1000)
try {
  for await (const batch of cap.batches({ signal })) {
    for (let i = 0; i < batch.length; i++) bytes += batch.lengthAt(i)
    packets += batch.length
  }
} catch (e) {
  if (e.name !== 'AbortError') throw e
}
const elapsed = (performance.now() - started) / 1000
sending = false
clearInterval(ticker)
const stats = cap.stats()
cap.close()
socket.close()
if (tty) process.stdout.write('\n')
console.log(
  `summary: ${packets} packets (${(bytes / 1e6).toFixed(1)} MB) in ${elapsed.toFixed(1)} s = ` +
    `${(packets / elapsed / 1000).toFixed(1)} kpps, ${((bytes * 8) / elapsed / 1e6).toFixed(1)} Mbit/s; ` +
    `kernel: ${stats.packets} received, ${stats.drops} dropped` +
    (generate ? `; this process sent ${sent} datagrams (each shows up on lo as outgoing and incoming, and so does the ICMP port-unreachable reply)` : ''),
)
