// Command-line parsing in tcpdump's style: short flags with a value in the next argument or
// attached (`-c 10`, `-c10`), long options (`--format pcap`, `--format=pcap`), and whatever is
// left over joined as the filter expression.

export class UsageError extends Error {
  override name = 'UsageError'
}

export interface OptionSpec {
  /** Takes a value. */
  value: boolean
  /** The option's canonical name (the key in the result). */
  name: string
}

export interface Parsed {
  options: Map<string, string | true>
  rest: string[]
}

export function parseArgs(argv: string[], specs: Record<string, OptionSpec>): Parsed {
  const options = new Map<string, string | true>()
  const rest: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--') {
      rest.push(...argv.slice(i + 1))
      break
    }
    if (!arg.startsWith('-') || arg === '-') {
      rest.push(arg)
      continue
    }
    let flag = arg
    let attached: string | undefined
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=')
      if (eq > 0) [flag, attached] = [arg.slice(0, eq), arg.slice(eq + 1)]
    } else if (!(arg in specs) && arg.length > 2 && `${arg.slice(0, 2)}` in specs && specs[arg.slice(0, 2)].value) {
      ;[flag, attached] = [arg.slice(0, 2), arg.slice(2)]
    }
    const spec = specs[flag]
    if (!spec) throw new UsageError(`unknown option ${flag}`)
    if (!spec.value) {
      if (attached !== undefined) throw new UsageError(`option ${flag} takes no value`)
      options.set(spec.name, true)
      continue
    }
    const value = attached ?? argv[++i]
    if (value === undefined) throw new UsageError(`option ${flag} needs a value`)
    options.set(spec.name, value)
  }
  return { options, rest }
}

/** A non-negative integer option, or `undefined` when absent. */
export function intOption(p: Parsed, name: string, flag: string, min = 0): number | undefined {
  const v = p.options.get(name)
  if (v === undefined) return undefined
  const n = Number(v)
  if (typeof v !== 'string' || !/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`${flag} needs an integer of at least ${min}, got '${String(v)}'`)
  }
  return n
}

/** A positive number option (may have decimals). */
export function numberOption(p: Parsed, name: string, flag: string): number | undefined {
  const v = p.options.get(name)
  if (v === undefined) return undefined
  const n = Number(v)
  if (typeof v !== 'string' || !Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} needs a positive number, got '${String(v)}'`)
  return n
}

export function stringOption(p: Parsed, name: string): string | undefined {
  const v = p.options.get(name)
  return typeof v === 'string' ? v : undefined
}

/** A FILE argument: `-` is standard input, as for tcpdump's `-r -`. */
export function fileArgument(file: string): string {
  return file === '-' ? '/dev/stdin' : file
}
