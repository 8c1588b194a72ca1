import { Capture } from 'netring'
import { benchNetwork, run, sleep } from './bench/lib.mjs'
const net = benchNetwork()
const BENCH = './target/release/examples/bench'
const cap = Capture.open(net.near, { profile: 'high-throughput', blockTimeoutMs: 1000 })
await run('ip', ['netns', 'exec', net.ns, 'taskset', '-c', '1', BENCH, 'sendmmsg', net.far, '1000000', '64', net.nearMac])
await sleep(1300)
const expected = cap.stats().packets
let n = 0, sum = 0, batches = 0, tNative = 0
console.error("consume", Date.now()); const t0 = performance.now()
while (n < expected) {
  const a = performance.now()
  const b = cap.nextBatch()
  tNative += performance.now() - a
  if (!b) break
  batches++
  const bytes = b.bytes
  for (let i = 0; i < b.length; i++) sum += bytes[b.offsetAt(i)] + b.lengthAt(i)
  n += b.length
}
const ms = performance.now() - t0
console.log({ n, batches, ms, mpps: n / ms / 1000, nativeMs: tNative, perBatchNative: tNative / batches })
cap.close(); net.remove()
