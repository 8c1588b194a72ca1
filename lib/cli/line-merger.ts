// `netring capture --workers N` without -w: each worker formats the lines of its own ring, and
// this merges them into one stream in time order, as one ring would print them (tcpdump has no
// workers to merge). Each worker's lines come in its ring's order; the merge holds them back
// until no worker can still deliver an earlier one:
// - a line is released once every worker has delivered a line at least as late (then no
//   earlier line can follow from any of them), which keeps a busy capture prompt;
// - a worker that stays quiet cannot hold the others back for longer than the window: a line
//   held that long is released anyway. Only a worker whose lines reach this thread more than
//   the window after another's later lines can print out of order.

/** How long a line may wait for a quiet worker, in milliseconds. */
export const REORDER_WINDOW_MS = 500
/** Lines held at most; beyond, the earliest are released (memory stays bounded at any rate). */
const MAX_HELD = 100_000

interface Held {
  /** Packet time in microseconds since the epoch (exact in a double). */
  time: number
  /** Arrival order, to keep equal times in the order they came. */
  seq: number
  arrived: number
  line: string
}

export class LineMerger {
  #held: Held[] = []
  #seq = 0
  /** Per worker, the latest packet time it delivered. */
  readonly #latest: number[]
  readonly #timer: NodeJS.Timeout

  constructor(
    workers: number,
    private readonly print: (text: string) => void,
  ) {
    this.#latest = new Array<number>(workers).fill(-Infinity)
    this.#timer = setInterval(() => this.#release(false), REORDER_WINDOW_MS / 4)
    this.#timer.unref()
  }

  /** A worker's lines, with each packet's time in microseconds. */
  add(worker: number, lines: readonly string[], times: ArrayLike<number>): void {
    const arrived = Date.now()
    for (let i = 0; i < lines.length; i++) {
      this.#held.push({ time: times[i], seq: this.#seq++, arrived, line: lines[i] })
      if (times[i] > this.#latest[worker]) this.#latest[worker] = times[i]
    }
    this.#release(false)
  }

  /** Prints every line held, in order, and stops the timer. */
  end(): void {
    clearInterval(this.#timer)
    this.#release(true)
  }

  #release(all: boolean): void {
    if (this.#held.length === 0) return
    this.#held.sort((a, b) => a.time - b.time || a.seq - b.seq)
    const safeUpTo = Math.min(...this.#latest)
    const expired = Date.now() - REORDER_WINDOW_MS
    const overflow = this.#held.length - MAX_HELD
    let n = 0
    while (n < this.#held.length) {
      const h = this.#held[n]
      if (!all && n >= overflow && h.time > safeUpTo && h.arrived > expired) break
      n++
    }
    if (n === 0) return
    let out = ''
    for (let i = 0; i < n; i++) out += `${this.#held[i].line}\n`
    this.#held.splice(0, n)
    this.print(out)
  }
}
