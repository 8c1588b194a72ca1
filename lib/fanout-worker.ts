// The thread side of a FanoutPool: pins itself, loads the handler, opens one capture in the
// pool's fanout group, says so, then (on `start`) runs the handler until the pool closes.
//
// Closing has to reach two kinds of handler: one that awaits (it gets the `close` message, its
// signal fires) and one that blocks in `nextBatchBlocking()`/`packets()` (its event loop does not
// turn, so it cannot get the message: its blocking waits are cut into slices that read a shared
// flag, and end once the pool closes).

import { readlinkSync } from 'node:fs'
import { parentPort, type Transferable, workerData } from 'node:worker_threads'

import { Capture } from './capture'
import { NetringError } from './errors'
import type { FromWorker, KernelCounts, ToWorker, WorkerInit } from './fanout-protocol'
import { flattenError } from './fanout-protocol'
import { native } from './native'
import type { PacketBatch } from './packet'

/** What a handler gets besides its capture. */
export interface FanoutContext<T = unknown> {
  /** This worker's place in the pool, 0 to workers - 1 (a restarted worker keeps it). */
  readonly index: number
  /** The pool's `workerData` option (a structured clone). */
  readonly workerData: T
  /** Fires when the pool closes: stop reading and return. */
  readonly signal: AbortSignal
  /** The CPU this thread is pinned to, or null. */
  readonly cpu: number | null
  /** Sends a value to the pool, which emits it as `'message'` with this worker. */
  postMessage(value: unknown, transfer?: readonly Transferable[]): void
  /** Sets this worker's handler counters (running totals); they show in `pool.stats()`. */
  report(counts: Record<string, number>): void
}

/** A handler module's default export. */
export type FanoutHandler<T = unknown> = (capture: Capture, context: FanoutContext<T>) => void | Promise<void>

/** How often a running worker refreshes its row of `pool.stats()`. */
const PUBLISH_EVERY_MS = 100

const init = workerData as WorkerInit
const port = parentPort!
const post = (message: FromWorker, transfer?: readonly Transferable[]) => port.postMessage(message, transfer)

const closing = new Int32Array(init.closing)
const abort = new AbortController()
const handlerCounts: Record<string, number> = {}
let capture: Capture | null = null
let lastPublish = 0
let started = false

// A dynamic import that TypeScript leaves alone: compiled to CommonJS, `import()` would become
// `require()`, which cannot load every ES module (top-level await) and ignores loader hooks.
const importModule = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<Record<string, unknown>>

let kernel: KernelCounts = { packets: 0, drops: 0, freezeCount: 0 }

function publish(): void {
  lastPublish = Date.now()
  try {
    if (capture && !capture.closed) kernel = capture.stats()
  } catch {
    // The socket failed (its interface went away): the handler hears of it from its capture;
    // the counters stay as last read.
  }
  post({ type: 'stats', kernel, handler: { ...handlerCounts } })
}

function publishSometimes(): void {
  if (Date.now() - lastPublish >= PUBLISH_EVERY_MS) publish()
}

/** Final counters, then the capture closes (every pending wait and iteration on it ends). */
function closeCapture(): void {
  if (!capture || capture.closed) return
  publish()
  capture.close()
}

/** Called whenever the pool may be closing: the signal fires once. */
function noticeClosing(): boolean {
  if (Atomics.load(closing, 0) === 0) return false
  if (!abort.signal.aborted) abort.abort()
  return true
}

/** Hooks the pool needs into the handler's capture: stats refreshes and close-aware waits. */
function instrument(cap: Capture): void {
  const take = cap.nextBatch
  cap.nextBatch = function (this: Capture): PacketBatch | null {
    const batch = take.call(this)
    publishSometimes()
    return batch
  }
  cap._interruptBlockingWait = () => {
    publishSometimes()
    if (!noticeClosing()) return false
    // A blocked handler holds no batch in use while it asks for the next one.
    closeCapture()
    return true
  }
}

function threadId(): number {
  // /proc/thread-self → "<pid>/task/<tid>": the kernel's id of this thread (for taskset, top -H).
  return Number(readlinkSync('/proc/thread-self').split('/').at(-1))
}

async function loadHandler(href: string): Promise<FanoutHandler> {
  let module: Record<string, unknown>
  try {
    module = await importModule(href)
  } catch (cause) {
    // Loader hooks registered with --import (tsx on Node 20) do not reach worker threads.
    const typescript = (cause as { code?: string })?.code === 'ERR_UNKNOWN_FILE_EXTENSION' && /\.[cm]?ts$/.test(href)
    const hint = typescript
      ? 'this Node cannot load TypeScript in a worker thread (type stripping came in Node 22.18); compile the handler to .js or .mjs'
      : 'the module must load on its own in a worker thread'
    throw new NetringError(
      `the handler module ${href} failed to load: ${(cause as Error)?.message ?? String(cause)}`,
      { code: 'EINVAL', errno: 22, option: 'handler', hint },
      { cause },
    )
  }
  // An ES module's default export, or a CommonJS module's `module.exports` function.
  let handler = module.default
  if (typeof handler !== 'function' && handler && typeof (handler as Record<string, unknown>).default === 'function') {
    handler = (handler as Record<string, unknown>).default
  }
  if (typeof handler !== 'function') {
    throw NetringError.invalidOption('handler', `${href} has no default export function (export default function (capture, context) { ... })`)
  }
  return handler as FanoutHandler
}

function openCapture(): Capture {
  try {
    return Capture.open(init.interface, { ...init.capture, fanout: init.fanout } as Parameters<typeof Capture.open>[1])
  } catch (e) {
    // The caller named these options inside the pool's `capture` option.
    if (e instanceof NetringError && e.option !== undefined && !e.option.startsWith('fanout')) e.option = `capture.${e.option}`
    throw e
  }
}

async function run(handler: FanoutHandler): Promise<void> {
  started = true
  const timer = setInterval(publish, PUBLISH_EVERY_MS)
  timer.unref()
  const context: FanoutContext = {
    index: init.index,
    workerData: init.workerData,
    signal: abort.signal,
    cpu: init.cpu,
    postMessage: (value, transfer) => post({ type: 'message', value }, transfer),
    report: (counts) => {
      Object.assign(handlerCounts, counts)
      publishSometimes()
    },
  }
  try {
    await handler(capture!, context)
  } catch (e) {
    // Ending with an AbortError because the pool closed is how a signal-aware loop stops.
    const stopped = abort.signal.aborted && (e as Error)?.name === 'AbortError'
    if (!stopped) post({ type: 'error', phase: 'handler', error: flattenError(e) })
  } finally {
    clearInterval(timer)
    closeCapture()
    post({ type: 'done' })
    process.exit(0)
  }
}

async function main(): Promise<void> {
  let handler: FanoutHandler
  let pinError: Error | null = null
  try {
    if (init.cpu !== null) {
      try {
        native.pinCurrentThread(init.cpu)
      } catch (e) {
        pinError = NetringError.fromNative(e) as Error
      }
    }
    handler = await loadHandler(init.handler)
    capture = openCapture()
    instrument(capture)
  } catch (e) {
    post({ type: 'error', phase: 'open', error: flattenError(e) })
    capture?.close()
    process.exit(0)
  }
  post({
    type: 'joined',
    fanoutGroup: capture.info.fanoutGroup!,
    tid: threadId(),
    cpu: pinError ? null : init.cpu,
    pinError: pinError ? flattenError(pinError) : null,
  })
  port.on('message', (message: ToWorker) => {
    if (message.type === 'start') {
      if (!started) void run(handler)
    } else if (message.type === 'close') {
      abort.abort()
      if (!started) {
        closeCapture()
        post({ type: 'done' })
        process.exit(0)
      }
      // A handler that ignores its signal but waits on its capture is released by closing it.
      setTimeout(closeCapture, init.captureGraceMs)
    }
  })
  if (init.startAtOnce) void run(handler)
}

void main()
