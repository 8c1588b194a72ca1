#!/usr/bin/env node
// The `netring` command: capture, replay, bridge and list, with tcpdump's flags where tcpdump
// has them. Errors are one line on stderr and exit status 1, like tcpdump's.

import { NetringError } from '../errors'
import { UsageError } from './args'
import { bridgeCommand, BRIDGE_USAGE } from './bridge-command'
import { captureCommand, CAPTURE_USAGE } from './capture-command'
import { listCommand, LIST_USAGE } from './list-command'
import { replayCommand, REPLAY_USAGE } from './replay-command'

const USAGE = [CAPTURE_USAGE, REPLAY_USAGE, BRIDGE_USAGE, LIST_USAGE].join('\n')

const COMMANDS: Record<string, (argv: string[]) => number | Promise<number>> = {
  capture: captureCommand,
  replay: replayCommand,
  bridge: bridgeCommand,
  list: listCommand,
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return first === undefined ? 1 : 0
  }
  const command = COMMANDS[first]
  // `netring -i eth0 ...` is a capture, as with tcpdump.
  if (!command && first.startsWith('-')) return captureCommand(argv)
  if (!command) throw new UsageError(`unknown command '${first}' (commands: ${Object.keys(COMMANDS).join(', ')})`)
  return command(rest)
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim()
}

// `netring capture ... | head`: a reader that goes away ends the command quietly, as tcpdump does.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0)
})
// A terminal that went away (EIO) or a closed stderr pipe: there is nowhere left to report
// anything, and the capture file must still be finished rather than the process crash.
process.stderr.on('error', () => {})

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`netring: ${oneLine(e.message)}\n${USAGE}\n`)
    } else if (e instanceof NetringError) {
      process.stderr.write(`netring: ${oneLine(e.message)}\n`)
    } else {
      process.stderr.write(`netring: ${oneLine(e instanceof Error ? (e.stack ?? e.message) : String(e))}\n`)
    }
    process.exit(1)
  },
)
