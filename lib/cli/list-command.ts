// `netring list [--json]`: the interfaces, as a table or as JSON.

import { interfaces } from '../interfaces'
import { parseArgs } from './args'

export const LIST_USAGE = 'usage: netring list [--json]'

export function listCommand(argv: string[]): number {
  const p = parseArgs(argv, { '--json': { value: false, name: 'json' } })
  const all = interfaces()
  if (p.options.has('json')) {
    process.stdout.write(`${JSON.stringify(all, null, 2)}\n`)
    return 0
  }
  const rows = [
    ['#', 'NAME', 'STATE', 'MTU', 'MAC', 'FLAGS', 'DRIVER', 'QUEUES', 'SPEED', 'RX PKTS', 'RX DROP', 'TX PKTS', 'TX DROP'],
    ...all.map((i) => [
      String(i.index),
      i.name,
      i.operstate,
      String(i.mtu),
      i.mac || '-',
      Object.entries(i.flags)
        .filter(([, on]) => on)
        .map(([f]) => f.toUpperCase())
        .join(',') || '-',
      i.driver ?? '-',
      `${i.rxQueues}/${i.txQueues}`,
      i.speedMbps ? `${i.speedMbps}Mb/s` : '-',
      String(i.rx.packets),
      String(i.rx.drops),
      String(i.tx.packets),
      String(i.tx.drops),
    ]),
  ]
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)))
  process.stdout.write(rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd()).join('\n') + '\n')
  return 0
}
