// Backpressure on the receive side loses nothing: a 'packet' listener that pauses the capture and
// resumes it later gets every packet, in order, from where it paused.

import test from 'ava'
import { Capture, Injector, type Packet } from 'netring'

import { ours, seqOf } from './helpers/collect'
import { frame, localVethPair } from './helpers/net'

test('pause() in a packet listener and resume() 20 ms later: all 200 packets delivered, in order', async (t) => {
  const veth = localVethPair(t)
  // A long block timeout puts many packets in one batch, so pauses fall in the middle of one.
  using rx = Capture.open(veth.b, { blockTimeoutMs: 200 })
  using tx = Injector.open(veth.a)
  const total = 200
  const seqs: number[] = []
  let pauses = 0
  const done = new Promise<void>((resolve) => {
    const deadline = setTimeout(resolve, 20_000)
    rx.on('packet', (p: Packet) => {
      if (!ours(p)) return
      const seq = seqOf(p)
      seqs.push(seq)
      if (seq % 40 === 5) {
        pauses++
        rx.pause()
        setTimeout(() => rx.resume(), 20)
      }
      if (seqs.length === total) {
        clearTimeout(deadline)
        resolve()
      }
    })
  })
  for (let i = 0; i < total; i++) t.true(tx.send(frame(veth.bMac, veth.aMac, 60, i)))
  t.true(tx.drain(5000))
  await done
  t.is(pauses, 5)
  t.deepEqual(
    seqs,
    Array.from({ length: total }, (_, i) => i),
  )
  t.is(rx.stats().drops, 0)
})

test('pause() from a batch listener keeps the batch: its packets are delivered after resume()', async (t) => {
  const veth = localVethPair(t)
  using rx = Capture.open(veth.b, { blockTimeoutMs: 200 })
  using tx = Injector.open(veth.a)
  const seqs: number[] = []
  let batches = 0
  const done = new Promise<void>((resolve) => {
    const deadline = setTimeout(resolve, 20_000)
    rx.on('batch', () => {
      batches++
      rx.pause()
      setTimeout(() => rx.resume(), 20)
    })
    rx.on('packet', (p: Packet) => {
      if (ours(p)) seqs.push(seqOf(p))
      if (seqs.length === 20) {
        clearTimeout(deadline)
        resolve()
      }
    })
  })
  for (let i = 0; i < 20; i++) t.true(tx.send(frame(veth.bMac, veth.aMac, 60, i)))
  t.true(tx.drain(5000))
  await done
  t.true(batches > 0)
  t.deepEqual(
    seqs,
    Array.from({ length: 20 }, (_, i) => i),
  )
})
