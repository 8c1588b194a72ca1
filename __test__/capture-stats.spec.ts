// Counters: what reached the ring, what was dropped because the ring was full, cumulative.

import test from 'ava'
import { Capture } from 'netring'

import { ours } from './helpers/collect'
import { ETH_P_EXPERIMENTAL, frame, tcpdumpDd, vethPair } from './helpers/net'

test('a slow reader on a small ring sees drops, and packets + drops add up to what was sent', async (t) => {
  const veth = vethPair(t)
  // 4 blocks of 128 KiB hold about 480 frames of 1000 bytes.
  using cap = Capture.open(veth.near, {
    profile: 'low-memory',
    filter: tcpdumpDd(`ether proto 0x${ETH_P_EXPERIMENTAL.toString(16)}`),
  })
  t.is(cap.info.blockCount, 4)
  const sent = 3000
  await veth.send(Array.from({ length: sent }, (_, i) => frame(veth.nearMac, veth.farMac, 1000, i)))

  // Only now read: the ring overflowed while nobody was reading.
  let read = 0
  for (const p of cap.packets({ timeoutMs: 500 })) if (ours(p)) read++

  // Until the drops are read (stats()), the kernel marks new packets TP_STATUS_LOSING.
  const late = 10
  await veth.send(Array.from({ length: late }, (_, i) => frame(veth.nearMac, veth.farMac, 100, i)))
  const losing = () => {
    const seen: boolean[] = []
    for (const p of cap.packets({ timeoutMs: 300 })) if (ours(p)) seen.push(p.status.losing)
    return seen
  }
  const lateStatus = losing()
  t.deepEqual(lateStatus, Array(late).fill(true))

  const stats = cap.stats()
  t.true(stats.drops > 0, `drops: ${stats.drops}`)
  t.is(stats.packets + stats.drops, sent + late, 'every packet was either received or counted as dropped')
  t.is(read + late, stats.packets, 'what was read is what the kernel says reached the ring')
  t.true(read < sent)

  // Counters are cumulative: reading again adds, never resets; drops were read, so no LOSING.
  await veth.send(Array.from({ length: late }, (_, i) => frame(veth.nearMac, veth.farMac, 100, i)))
  const again = losing()
  t.deepEqual(again, Array(late).fill(false))
  const after = cap.stats()
  t.is(after.packets, stats.packets + late)
  t.is(after.drops, stats.drops)
})
