// The FanoutPool handler of `npm run bench`. workerData.mode:
// - 'drain': wait (Atomics) until the bench has filled the rings, then consume what the ring
//   holds, reading a byte and the length of each packet like the drain paths, and post the time;
// - 'live': count packets until the pool closes.
export default function bench(capture, { workerData, postMessage, signal }) {
  if (workerData.mode === 'drain') {
    const go = new Int32Array(workerData.go)
    postMessage({ ready: true })
    Atomics.wait(go, 0, 0)
    const expected = capture.stats().packets
    let n = 0
    let sum = 0
    const t0 = performance.now()
    while (n < expected) {
      const b = capture.nextBatch()
      if (!b) break
      const bytes = b.bytes
      for (let i = 0; i < b.length; i++) sum += bytes[b.offsetAt(i)] + b.lengthAt(i)
      n += b.length
    }
    postMessage({ packets: n, expected, ms: performance.now() - t0, sum })
    return new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
  }
  let n = 0
  while (!signal.aborted) {
    const b = capture.nextBatchBlocking(100)
    if (!b) continue
    const bytes = b.bytes
    for (let i = 0; i < b.length; i++) n += bytes[b.offsetAt(i)] >= 0 ? 1 : 0
  }
  postMessage({ packets: n })
}
