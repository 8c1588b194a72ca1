// Reading what a capture got, bounded in time.

import type { Capture, OwnedPacket, PacketInfo } from 'netring'

import { ETH_P_EXPERIMENTAL } from './net'

export const ours = (p: PacketInfo) => p.protocol === ETH_P_EXPERIMENTAL

/**
 * Owned copies of the packets `match` accepts, until `want` of them arrived or `timeoutMs`
 * passed (then returns what arrived, so the test's assertion says what was missing).
 */
export async function collect(
  cap: Capture,
  want: number,
  { timeoutMs = 5000, match = ours }: { timeoutMs?: number; match?: (p: PacketInfo) => boolean } = {},
): Promise<OwnedPacket[]> {
  const got: OwnedPacket[] = []
  const signal = AbortSignal.timeout(timeoutMs)
  try {
    for await (const batch of cap.batches({ signal })) {
      for (const p of batch) if (match(p)) got.push(p.copy())
      if (got.length >= want) break
    }
  } catch (e) {
    if ((e as Error).name !== 'AbortError') throw e
  }
  return got
}

/** The sequence number the test frames carry after the Ethernet header. */
export const seqOf = (p: PacketInfo, offset = 14) => p.data.readUInt32BE(offset)
