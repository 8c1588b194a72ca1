// The live status line on stderr (only when stderr is a terminal), and the end-of-run signals.

export interface StatusSource {
  packets(): number
  bytes(): number
  drops(): number
  fileBytes(): number | undefined
}

const human = (n: number) =>
  n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`

/**
 * Whether the status line is drawn: only on a terminal, and not when the command prints packet
 * lines to that same terminal (a redrawn line would land in the middle of them).
 */
export function statusLineShown(printsLines: boolean): boolean {
  return process.stderr.isTTY === true && !(printsLines && process.stdout.isTTY)
}

/**
 * Redraws one line on stderr every second while running (when `shown`, see `statusLineShown`).
 * The returned function stops it and erases the line, so what follows starts on a clean line.
 */
export function startStatusLine(source: StatusSource, shown: boolean): () => void {
  if (!shown) return () => {}
  let last = { at: process.hrtime.bigint(), packets: 0, bytes: 0 }
  const timer = setInterval(() => {
    const now = { at: process.hrtime.bigint(), packets: source.packets(), bytes: source.bytes() }
    const secs = Number(now.at - last.at) / 1e9
    const pps = Math.round((now.packets - last.packets) / secs)
    const mbps = ((now.bytes - last.bytes) * 8) / secs / 1e6
    const file = source.fileBytes()
    const parts = [`${now.packets} packets`, `${pps} pps`, `${mbps.toFixed(1)} Mbit/s`, `${source.drops()} drops`]
    if (file !== undefined) parts.push(human(file))
    process.stderr.write(`\r\x1b[K${parts.join(', ')}`)
    last = now
  }, 1000)
  timer.unref()
  return () => {
    clearInterval(timer)
    process.stderr.write('\r\x1b[K')
  }
}

/**
 * Calls `stop` on the first SIGINT, SIGTERM or SIGHUP (the terminal went away: tcpdump finishes
 * its file then too). The handlers stay installed until the process exits, so a second Ctrl-C
 * (a terminal and a parent often both send one) cannot kill the process while it finishes its
 * file and prints its summary.
 */
export function onInterrupt(stop: () => void): void {
  let stopped = false
  const handler = () => {
    if (stopped) return
    stopped = true
    stop()
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
  process.on('SIGHUP', handler)
}
