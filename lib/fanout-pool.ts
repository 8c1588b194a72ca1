// FanoutPool: one capture per worker thread, all in one fanout group on one interface, so that
// a handler runs on every core, each copy with a zero-copy ring of its own.
//
// Opening is two-phase. Worker 0 creates the group (with the kernel's uniqueId flag unless a
// group id is given, so no other process's group is joined by accident) and reports the id the
// kernel picked; the other workers join that id. Only when every worker has joined do the
// handlers start and `open()` resolve: from then on the kernel spreads packets over all of them.
// The thread side is fanout-worker.ts; what they say to each other, fanout-protocol.ts.

import { EventEmitter } from 'node:events'
import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'

import { NetringError } from './errors'
import type { FlatError, FromWorker, KernelCounts, ResourceLimits, ToWorker, WorkerInit } from './fanout-protocol'
import { restoreError } from './fanout-protocol'
import { native, type Binding } from './native'
import {
  captureOptions,
  type CaptureOptions,
  type Check,
  checkOptions,
  type FanoutFlag,
  FANOUT_MODES,
  fanoutFlags,
  type FanoutMode,
  interfaceName,
  isObject,
  nonNegative,
  oneOf,
  u32,
} from './options'
import { describe } from './numbers'

export type { FanoutContext, FanoutHandler } from './fanout-worker'

export interface FanoutPoolOptions {
  /** Worker threads, each with its own capture; `'auto'` is one per CPU this process may use. @default 'auto' */
  workers?: number | 'auto'
  /** The handler module (path or file: URL); its default export is called in every worker as `(capture, context)`. */
  handler: string | URL
  /** How the kernel spreads packets. `group` is picked by the kernel (uniqueId) unless given. @default { mode: 'hash' } */
  fanout?: { mode: FanoutMode; flags?: FanoutFlag[]; group?: number }
  /** Capture options for every worker's capture (all but `fanout`). @default {} */
  capture?: Omit<CaptureOptions, 'fanout'>
  /** Passed to every handler as `context.workerData` (structured clone). */
  workerData?: unknown
  /** Pin worker i to CPU i (`true`) or to `pinCpus[i]`, where this process may run there; see `workers[i].cpu`. @default false */
  pinCpus?: boolean | number[]
  /** V8 heap limits of each worker (as for `new Worker`); a worker over them dies and is reported. */
  resourceLimits?: ResourceLimits
  /** A worker that dies or whose handler ends: start a new one in the same group, or close the pool. @default 'restart' */
  onWorkerExit?: 'restart' | 'close'
  /** How long `close()` waits for handlers to return before terminating their threads. @default 5000 */
  closeTimeoutMs?: number
}

export interface FanoutWorkerInfo {
  /** 0 to workers - 1; kept by a restarted worker. */
  index: number
  /** Node's worker thread id (`worker.threadId`). */
  threadId: number
  /** The kernel's id of the thread (for `taskset -p`, `top -H`). */
  tid: number
  /** The CPU the thread is pinned to, or null. */
  cpu: number | null
  /** Why the thread is not pinned where `pinCpus` asked, if it is not. */
  pinError: NetringError | null
  /** How many times this worker was restarted. */
  restarts: number
}

export interface FanoutWorkerStats extends KernelCounts {
  index: number
  restarts: number
  /** What the handler reported with `context.report()`. */
  handler: Record<string, number>
}

export interface FanoutPoolStats {
  /** One row per worker, restarts included (a restarted worker's counts continue). */
  workers: FanoutWorkerStats[]
  total: KernelCounts & { handler: Record<string, number> }
}

interface FanoutPoolEvents {
  message: [value: unknown, worker: FanoutWorkerInfo]
  error: [error: Error & { workerIndex?: number }, worker: FanoutWorkerInfo]
  /** A worker ended while the pool was open; `'restart'` follows unless the pool closes. */
  exit: [worker: FanoutWorkerInfo, exitCode: number]
  restart: [worker: FanoutWorkerInfo]
  close: [stats: FanoutPoolStats]
}

/** A worker's restart delay grows while it keeps dying young, so a broken handler cannot spin. */
const RESTART_DELAY_MS = { first: 100, max: 5000, lifetimeThatResets: 1000 }
/** The compiled worker entry, next to this file. */
const WORKER_ENTRY = join(__dirname, 'fanout-worker.js')

/** The longest delay setTimeout takes (a longer one fires after 1 ms). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1

const ZERO: KernelCounts = { packets: 0, drops: 0, freezeCount: 0 }

/** One place in the pool: the current worker thread and the counts of the ones before it. */
class Slot {
  worker!: Worker
  info!: FanoutWorkerInfo
  kernel: KernelCounts = { ...ZERO }
  handler: Record<string, number> = {}
  /** Counts of earlier threads in this slot. */
  retired = { kernel: { ...ZERO }, handler: {} as Record<string, number> }
  bornAt = 0
  restartDelay = 0
  restartTimer: NodeJS.Timeout | null = null
  /** Errors of the thread after it joined and before the pool watches it; null once it does. */
  pendingErrors: Error[] | null = null
  /** Resolves when the current thread has exited. */
  exited!: Promise<number>
  constructor(readonly index: number) {}

  retire(): void {
    this.retired.kernel = add(this.retired.kernel, this.kernel)
    this.retired.handler = addCounts(this.retired.handler, this.handler)
    this.kernel = { ...ZERO }
    this.handler = {}
  }
}

interface Plan {
  iface: string
  capture: Binding.NativeCaptureOptions
  fanout: { mode: FanoutMode; flags: FanoutFlag[]; group?: number }
  handler: string
  workerData: unknown
  cpus: (number | null)[]
  pinErrors: (NetringError | null)[]
  resourceLimits: ResourceLimits | undefined
  onWorkerExit: 'restart' | 'close'
  closeTimeoutMs: number
}

export class FanoutPool extends EventEmitter<FanoutPoolEvents> implements AsyncDisposable, Disposable {
  readonly interface: string
  /** The fanout group every worker joined. */
  readonly group: number
  readonly #plan: Plan
  readonly #slots: Slot[]
  readonly #closing: SharedArrayBuffer
  #closed: Promise<FanoutPoolStats> | null = null

  private constructor(plan: Plan, group: number, slots: Slot[], closing: SharedArrayBuffer) {
    super()
    this.interface = plan.iface
    this.group = group
    this.#plan = plan
    this.#slots = slots
    this.#closing = closing
    for (const slot of slots) this.#watch(slot)
  }

  /**
   * Starts the workers, each with a capture on `iface` in one fanout group, and resolves once
   * every one of them has joined the group; then the handlers start. If any worker cannot open
   * its capture or load the handler, every worker is stopped and the promise rejects with that
   * error.
   */
  static async open(iface: string, options: FanoutPoolOptions): Promise<FanoutPool> {
    const plan = planOf(iface, options)
    const closing = new SharedArrayBuffer(4)
    const slots = plan.cpus.map((_, i) => new Slot(i))
    try {
      // Worker 0 creates the group; the kernel may pick its id.
      const first = await startWorker(plan, slots[0], closing, plan.fanout.group, false)
      const group = first.fanoutGroup
      // Wait for all of them, so that no failure is left unobserved; the first one is the answer.
      const joined = await Promise.allSettled(slots.slice(1).map((slot) => startWorker(plan, slot, closing, group, false)))
      const failed = joined.find((r) => r.status === 'rejected')
      if (failed) throw failed.reason
      const pool = new FanoutPool(plan, group, slots, closing)
      for (const slot of slots) slot.worker.postMessage({ type: 'start' } satisfies ToWorker)
      return pool
    } catch (e) {
      // Every worker that started goes away before the caller hears of the failure.
      Atomics.store(new Int32Array(closing), 0, 1)
      await Promise.all(slots.filter((s) => s.worker).map((s) => stopWorker(s, plan.closeTimeoutMs)))
      throw e
    }
  }

  /** The workers as they are now (a restarted worker has a new thread). */
  get workers(): readonly FanoutWorkerInfo[] {
    return this.#slots.map((s) => ({ ...s.info }))
  }

  get closed(): boolean {
    return this.#closed !== null
  }

  /**
   * Per worker and in total: the kernel's counters of each worker's capture (packets, drops,
   * freezeCount) and the handler's reported counts. A running worker refreshes its row about
   * every 100 ms while its thread turns; after `close()` the figures are final.
   */
  stats(): FanoutPoolStats {
    const workers = this.#slots.map((s) => ({
      index: s.index,
      restarts: s.info.restarts,
      ...add(s.retired.kernel, s.kernel),
      handler: addCounts(s.retired.handler, s.handler),
    }))
    let total = { ...ZERO }
    let handler: Record<string, number> = {}
    for (const w of workers) {
      total = add(total, w)
      handler = addCounts(handler, w.handler)
    }
    return { workers, total: { ...total, handler } }
  }

  /**
   * Fires every handler's signal (and ends their blocking waits), waits up to `closeTimeoutMs`
   * for the handlers to return, terminates the threads that did not, and resolves with the final
   * stats once every capture is closed. Idempotent: every call gets the same promise.
   */
  close(): Promise<FanoutPoolStats> {
    this.#closed ??= this.#close()
    return this.#closed
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /** Starts closing; `await using` (or `await pool.close()`) also waits for it. */
  [Symbol.dispose](): void {
    void this.close()
  }

  async #close(): Promise<FanoutPoolStats> {
    Atomics.store(new Int32Array(this.#closing), 0, 1)
    for (const slot of this.#slots) {
      if (slot.restartTimer) clearTimeout(slot.restartTimer)
      slot.restartTimer = null
    }
    await Promise.all(this.#slots.map((slot) => stopWorker(slot, this.#plan.closeTimeoutMs)))
    const stats = this.stats()
    this.emit('close', stats)
    return stats
  }

  /** Reports what a running worker says and does; applies `onWorkerExit` when it ends. */
  #watch(slot: Slot): void {
    const worker = slot.worker
    // A thread that ends without saying why (process.exit in the handler) is reported too.
    let explained = false
    for (const e of slot.pendingErrors ?? []) {
      explained = true
      this.#report(slot, e)
    }
    slot.pendingErrors = null
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'message') this.emit('message', m.value, { ...slot.info })
      else if (m.type === 'error') this.#report(slot, restoreError(m.error))
      explained ||= m.type === 'done' || m.type === 'error'
    })
    worker.on('error', (e) => {
      explained = true
      this.#report(slot, e)
    })
    void slot.exited.then((exitCode) => {
      if (this.closed || worker !== slot.worker) return
      if (!explained) {
        const e = new Error(`fanout worker ${slot.index} exited with code ${exitCode} while the pool was open`)
        this.#report(slot, Object.assign(e, { code: 'ERR_WORKER_EXITED', exitCode }))
      }
      this.emit('exit', { ...slot.info }, exitCode)
      if (this.#plan.onWorkerExit === 'close') {
        void this.close()
        return
      }
      const lived = Date.now() - slot.bornAt
      slot.restartDelay =
        lived >= RESTART_DELAY_MS.lifetimeThatResets
          ? 0
          : Math.min(RESTART_DELAY_MS.max, Math.max(RESTART_DELAY_MS.first, slot.restartDelay * 2))
      slot.restartTimer = setTimeout(() => void this.#restart(slot), slot.restartDelay)
    })
  }

  async #restart(slot: Slot): Promise<void> {
    slot.restartTimer = null
    if (this.closed) return
    const restarts = slot.info.restarts + 1
    slot.retire()
    try {
      await startWorker(this.#plan, slot, this.#closing, this.group, true, restarts)
    } catch (e) {
      // Closing ended it before it joined: nothing to report once the pool is closed.
      if (this.closed) return
      // A worker that cannot even join again (the interface went away, ...): the pool cannot
      // be whole any more.
      this.#report(slot, e as Error)
      if (!this.closed) await this.close()
      return
    }
    if (this.closed) return
    this.#watch(slot)
    this.emit('restart', { ...slot.info })
  }

  #report(slot: Slot, error: Error): void {
    ;(error as Error & { workerIndex?: number }).workerIndex = slot.index
    this.emit('error', error, { ...slot.info })
  }
}

/**
 * Starts one worker thread in `slot` and resolves once its capture has joined the group (with
 * what it reported), or rejects with why it could not, after the thread has exited.
 */
function startWorker(
  plan: Plan,
  slot: Slot,
  closing: SharedArrayBuffer,
  group: number | undefined,
  startAtOnce: boolean,
  restarts = 0,
): Promise<Extract<FromWorker, { type: 'joined' }>> {
  const index = slot.index
  const init: WorkerInit = {
    index,
    interface: plan.iface,
    capture: plan.capture,
    fanout:
      group === undefined
        ? { group: 0, ...nativeFanout(plan.fanout.mode, [...plan.fanout.flags, 'uniqueId']) }
        : { group, ...nativeFanout(plan.fanout.mode, plan.fanout.flags) },
    handler: plan.handler,
    workerData: plan.workerData,
    cpu: plan.cpus[index],
    startAtOnce,
    closing,
    captureGraceMs: Math.min(1000, plan.closeTimeoutMs / 2),
  }
  let worker: Worker
  try {
    worker = new Worker(WORKER_ENTRY, { workerData: init, resourceLimits: plan.resourceLimits })
  } catch (e) {
    // A MessagePort, say, would have to be transferred, and to one thread only.
    if ((e as Error)?.name === 'DataCloneError' || (e as { code?: string })?.code === 'ERR_MISSING_TRANSFERABLE_IN_TRANSFER_LIST') {
      return Promise.reject(NetringError.invalidOption('workerData', `must be structured-cloneable: ${(e as Error).message}`))
    }
    // A rejection, not a throw: the caller may be starting several workers in one map().
    return Promise.reject(threadFailure(plan, e as Error))
  }
  slot.worker = worker
  slot.bornAt = Date.now()
  slot.info = { index, threadId: worker.threadId, tid: 0, cpu: null, pinError: plan.pinErrors[index], restarts }
  slot.exited = new Promise((resolve) => worker.once('exit', resolve))
  slot.pendingErrors = []
  // Counters arrive for the life of the thread.
  worker.on('message', (m: FromWorker) => {
    if (m.type === 'stats') {
      slot.kernel = m.kernel
      slot.handler = m.handler
    }
  })
  return new Promise((resolve, reject) => {
    let failure: Error | null = null
    let joined = false
    const onMessage = (m: FromWorker) => {
      if (m.type === 'joined') {
        joined = true
        worker.off('message', onMessage)
        slot.info.tid = m.tid
        slot.info.cpu = m.cpu
        if (m.pinError) slot.info.pinError = restoreError(m.pinError) as NetringError
        resolve(m)
      } else if (m.type === 'error') {
        failure ??= restoreError(m.error as FlatError)
      }
    }
    // Stays for the life of the thread: a Worker 'error' with no listener would throw here.
    const onError = (e: Error) => {
      if (!joined) failure ??= e
      else slot.pendingErrors?.push(e)
    }
    worker.on('message', onMessage)
    worker.on('error', onError)
    void slot.exited.then((code) => {
      if (!joined) {
        worker.off('message', onMessage)
        reject(threadFailure(plan, failure) ?? new Error(`fanout worker ${index} exited with code ${code} before joining the group`))
      }
    })
  })
}

/** A thread that could not start, or ran out of heap while loading: bad `resourceLimits`, most likely. */
function threadFailure(plan: Plan, failure: Error | null): Error | null {
  const code = (failure as { code?: string } | null)?.code
  if (code !== 'ERR_WORKER_INIT_FAILED' && code !== 'ERR_WORKER_OUT_OF_MEMORY') return failure
  const option = plan.resourceLimits ? { option: 'resourceLimits' } : {}
  const wrapped =
    code === 'ERR_WORKER_INIT_FAILED'
      ? new NetringError(
          `a fanout worker thread could not start: ${failure!.message}`,
          { code: 'EAGAIN', errno: 11, syscall: 'pthread_create', ...option, hint: 'resourceLimits.stackSizeMb may ask for more stack than the system gives a thread' },
          { cause: failure },
        )
      : new NetringError(
          `a fanout worker ran out of heap before joining the group: ${failure!.message}`,
          { code: 'ENOMEM', errno: 12, ...option, hint: 'resourceLimits leave too little heap to load the handler and open a capture' },
          { cause: failure },
        )
  return wrapped
}

/** Asks a worker to stop, waits up to `timeoutMs`, then terminates it; resolves once it exited. */
async function stopWorker(slot: Slot, timeoutMs: number): Promise<void> {
  const worker = slot.worker
  worker.postMessage({ type: 'close' } satisfies ToWorker)
  // terminate() settles when the thread is gone, which `exited` also says. A bound beyond what
  // setTimeout takes (Infinity) means no bound: setTimeout would make it 1 ms.
  const timer = timeoutMs <= MAX_TIMEOUT_MS ? setTimeout(() => worker.terminate().catch(() => {}), timeoutMs) : undefined
  await slot.exited
  clearTimeout(timer)
}

function add(a: KernelCounts, b: KernelCounts): KernelCounts {
  return { packets: a.packets + b.packets, drops: a.drops + b.drops, freezeCount: a.freezeCount + b.freezeCount }
}

function addCounts(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const sum = { ...a }
  for (const [k, v] of Object.entries(b)) sum[k] = (sum[k] ?? 0) + v
  return sum
}

// ---- options ----

const workerCount: Check = (v, o) => {
  if (v === 'auto') return
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > native.FANOUT_MAX_MEMBERS) {
    throw NetringError.invalidOption(
      o,
      `must be 'auto' or an integer from 1 to ${native.FANOUT_MAX_MEMBERS} (the sockets one fanout group takes), got ${describe(v)}`,
    )
  }
}

const handlerModule: Check = (v, o) => {
  if (v instanceof URL) {
    if (v.protocol !== 'file:') throw NetringError.invalidOption(o, `must be a file: URL or a path, got ${v.href}`)
    return
  }
  if (typeof v !== 'string' || v.length === 0) throw NetringError.invalidOption(o, `must be a path or a file: URL, got ${describe(v)}`)
}

const poolFanout: Check = (v, o) => {
  checkOptions(v, o, { mode: oneOf(...FANOUT_MODES), flags: fanoutFlags, group: u32 })
  const f = v as { mode?: unknown; group?: number }
  if (f.mode === undefined) throw NetringError.invalidOption(`${o}.mode`, 'is required')
  if (f.group !== undefined && f.group > 0xffff) throw NetringError.invalidOption(`${o}.group`, `must be 0 to 65535, got ${f.group}`)
}

const cpuList: Check = (v, o) => {
  if (typeof v === 'boolean') return
  if (!Array.isArray(v)) throw NetringError.invalidOption(o, `must be a boolean or an array of CPU numbers, got ${describe(v)}`)
  v.forEach((cpu, i) => u32(cpu, `${o}[${i}]`))
}

const heapLimits: Check = (v, o) => {
  checkOptions(v, o, {
    maxYoungGenerationSizeMb: nonNegative,
    maxOldGenerationSizeMb: nonNegative,
    codeRangeSizeMb: nonNegative,
    stackSizeMb: nonNegative,
  })
}

const anything: Check = () => {}

const POOL_OPTIONS: Record<keyof FanoutPoolOptions, Check> = {
  workers: workerCount,
  handler: handlerModule,
  fanout: poolFanout,
  capture: (v, o) => {
    if (isObject(v) && v.fanout !== undefined) {
      throw NetringError.invalidOption(`${o}.fanout`, 'the pool joins its own group: use the pool option `fanout` ({ mode, flags, group })')
    }
    captureOptions(v, o)
  },
  workerData: anything,
  pinCpus: cpuList,
  resourceLimits: heapLimits,
  onWorkerExit: oneOf('restart', 'close'),
  closeTimeoutMs: nonNegative,
}

/** Checks the options once, in the caller's thread, and works out what each worker gets. */
function planOf(iface: string, given: FanoutPoolOptions): Plan {
  interfaceName(iface)
  if (!isObject(given)) throw NetringError.invalidOption('options', `must be an object with at least a handler, got ${describe(given)}`)
  // The checked copy from here on: a getter cannot answer the check with one value and the plan with another.
  const options = checkOptions(given, '', POOL_OPTIONS) as unknown as FanoutPoolOptions
  if (options.handler === undefined) throw NetringError.invalidOption('handler', 'is required: the module whose default export runs in every worker')
  const url =
    options.handler instanceof URL
      ? options.handler
      : options.handler.startsWith('file:')
        ? new URL(options.handler)
        : pathToFileURL(resolve(options.handler))
  const path = fileURLToPath(url)
  if (!existsSync(path)) {
    throw NetringError.of('ENOENT', `the handler module ${path} does not exist`, {
      option: 'handler',
      hint: 'a relative path is resolved against process.cwd(); use new URL("./handler.mjs", import.meta.url) to name a file next to yours',
    })
  }
  const workers =
    options.workers === undefined || options.workers === 'auto'
      ? Math.min(availableParallelism(), native.FANOUT_MAX_MEMBERS)
      : options.workers
  const fanout = options.fanout ?? { mode: 'hash' as const }
  // The pool asks for uniqueId itself when it lets the kernel pick the group.
  const flags = (fanout.flags ?? []).filter((f) => f !== 'uniqueId')
  if (fanout.flags?.includes('uniqueId') && fanout.group !== undefined) {
    throw NetringError.invalidOption('fanout.group', 'cannot be given with the uniqueId flag (the kernel picks the id)')
  }
  const { cpus, pinErrors } = cpuPlan(workers, options.pinCpus ?? false)
  return {
    iface,
    capture: captureOptions(options.capture, 'capture'),
    fanout: { mode: fanout.mode, flags, ...(fanout.group === undefined ? {} : { group: fanout.group }) },
    handler: url.href,
    workerData: options.workerData,
    cpus,
    pinErrors,
    resourceLimits: options.resourceLimits,
    onWorkerExit: options.onWorkerExit ?? 'restart',
    closeTimeoutMs: options.closeTimeoutMs ?? 5000,
  }
}

/**
 * Which CPU each worker is pinned to: worker i to CPU i (or `pinCpus[i]`) where this process may
 * run (its affinity mask, as `taskset` or a cgroup set it), else unpinned, with the reason.
 */
function cpuPlan(workers: number, pinCpus: boolean | number[]): { cpus: (number | null)[]; pinErrors: (NetringError | null)[] } {
  const cpus: (number | null)[] = []
  const pinErrors: (NetringError | null)[] = []
  const allowed = pinCpus === false ? [] : native.allowedCpus()
  for (let i = 0; i < workers; i++) {
    const want = pinCpus === false ? null : pinCpus === true ? i : (pinCpus[i] ?? null)
    if (want === null || allowed.includes(want)) {
      cpus.push(want)
      pinErrors.push(
        pinCpus !== false && want === null
          ? NetringError.invalidOption('pinCpus', `names no CPU for worker ${i} (${(pinCpus as number[]).length} given)`)
          : null,
      )
    } else {
      cpus.push(null)
      pinErrors.push(
        new NetringError(`worker ${i} is not pinned: CPU ${want} is not one this process may run on (${allowed.join(', ')})`, {
          code: 'EINVAL',
          errno: 22,
          option: 'pinCpus',
          syscall: 'sched_getaffinity',
          hint: 'the process affinity (taskset, cgroup cpuset) leaves this CPU out; give pinCpus a list of allowed CPUs',
        }),
      )
    }
  }
  return { cpus, pinErrors }
}

/** The binding's enum types for the fanout words the options checked (its own lists). */
function nativeFanout(mode: FanoutMode, flags: FanoutFlag[]): Pick<Binding.NativeFanout, 'mode' | 'flags'> {
  return { mode: mode as Binding.FanoutMode, flags: flags as Binding.FanoutFlag[] }
}
