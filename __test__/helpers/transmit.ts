// Queueing a list of frames through one of the four ways in (send, sendFrames and the two
// zero-copy slot forms), the same for an Injector and an XdpSocket: the byte-exact tests of both
// check what arrives, this checks what each way promises on the sending side (sent slots detach).

import type { ExecutionContext } from 'ava'
import type { TxSlot, TxSlotRun } from 'netring'

export const TRANSMIT_WAYS = ['send', 'sendFrames', 'allocate (zero-copy)', 'allocateRun (zero-copy)'] as const
export type TransmitWay = (typeof TRANSMIT_WAYS)[number]

/** What an Injector and an XdpSocket have in common for sending. */
export interface FrameSender {
  send(frame: Uint8Array): boolean
  sendFrames(frames: readonly Uint8Array[]): number
  allocate(length: number): TxSlot | null
  allocateRun(count: number, length: number): TxSlotRun | null
  drain(timeoutMs?: number): boolean
}

/** Queues every frame in order, waiting for room (drain) whenever the sender is full; returns how many. */
export function queueFrames(t: ExecutionContext, tx: FrameSender, frames: Buffer[], how: TransmitWay): number {
  let queued = 0
  if (how === 'send') {
    for (const f of frames) {
      while (!tx.send(f)) tx.drain(1000)
      queued++
    }
  } else if (how === 'sendFrames') {
    while (queued < frames.length) {
      queued += tx.sendFrames(frames.slice(queued))
      tx.drain(1000)
    }
  } else if (how === 'allocateRun (zero-copy)') {
    while (queued < frames.length) {
      const run = tx.allocateRun(frames.length - queued, 1514)
      if (!run) {
        tx.drain(1000)
        continue
      }
      const views = Array.from({ length: run.count }, (_, i) => run.slot(i))
      const lengths = views.map((view, i) => frames[queued + i].copy(view))
      run.send(run.count, lengths)
      t.true(views.every((v) => v.byteLength === 0), 'the slots are detached once sent')
      queued += run.count
    }
  } else {
    for (const f of frames) {
      let slot = tx.allocate(f.length)
      while (!slot) {
        tx.drain(1000)
        slot = tx.allocate(f.length)
      }
      t.is(slot.data.length, f.length)
      f.copy(slot.data)
      const data = slot.data
      slot.send()
      t.is(data.byteLength, 0, 'the slot is detached once sent')
      queued++
    }
  }
  return queued
}
