// tshark as an independent reader of capture files.

import { execFileSync } from 'node:child_process'

export interface TsharkFrame {
  bytes: Buffer
  len: number
  capLen: number
  /** `sec.nnnnnnnnn`, as tshark prints it at nanosecond resolution. */
  epoch: string
  interfaceName: string
  /** pcapng direction: 1 inbound, 2 outbound, 0 or '' unknown. */
  direction: number
}

const tshark = (args: string[]) =>
  execFileSync('tshark', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 256 << 20, timeout: 60_000 })

/** Every frame of `file` as tshark reads it. */
export function tsharkFrames(file: string): TsharkFrame[] {
  const fields = ['frame.len', 'frame.cap_len', 'frame.time_epoch', 'frame.interface_name', 'frame.packet_flags_direction']
  const rows = tshark(['-r', file, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])])
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'))
  const json = JSON.parse(tshark(['-r', file, '-T', 'json', '-x'])) as { _source: { layers: { frame_raw: [string] } } }[]
  return rows.map(([len, capLen, epoch, interfaceName, direction], i) => ({
    bytes: Buffer.from(json[i]._source.layers.frame_raw[0], 'hex'),
    len: Number(len),
    capLen: Number(capLen),
    epoch,
    interfaceName,
    direction: Number(direction || 0),
  }))
}

/** The received and dropped counts of a pcapng file's Interface Statistics Block. */
export function tsharkInterfaceStats(file: string): { received: number; dropped: number } {
  const out = tshark([
    '-r',
    file,
    '-X',
    'read_format:MIME Files Format',
    '-T',
    'fields',
    '-e',
    'pcapng.options.option.data.interface.received',
    '-e',
    'pcapng.options.option.data.interface.dropped',
  ])
  const row = out
    .split('\n')
    .map((l) => l.split('\t'))
    .find(([r, d]) => r !== '' && r !== undefined && d !== undefined && d !== '')
  if (!row) throw new Error(`no Interface Statistics Block in ${file}: ${out}`)
  return { received: Number(row[0]), dropped: Number(row[1]) }
}

/** `sec.nnnnnnnnn` of a packet timestamp. */
export const epochOf = (t: { sec: number; nsec: number }) => `${t.sec}.${String(t.nsec).padStart(9, '0')}`
