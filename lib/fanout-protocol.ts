// What a FanoutPool and its worker threads say to each other: the worker's start-up data, the
// messages both ways, and errors flattened for the trip across the thread boundary (structured
// clone keeps an Error's message and stack but drops `code`, `option`, ... and its class).

import type { ResourceLimits } from 'node:worker_threads'

import { NetringError } from './errors'
import type { Binding } from './native'

/** Kernel counters of one capture, as `Capture.stats()` gives them. */
export interface KernelCounts {
  packets: number
  drops: number
  freezeCount: number
}

/** What a worker starts with (its `workerData`). */
export interface WorkerInit {
  index: number
  interface: string
  capture: Binding.NativeCaptureOptions
  /** The group to join; with `uniqueId` in its flags the kernel picks the id (group 0). */
  fanout: Binding.NativeFanout
  handler: string
  workerData: unknown
  cpu: number | null
  /** Start the handler right after joining instead of waiting for `start` (a restart). */
  startAtOnce: boolean
  /** Int32Array[1] over it: set to 1 when the pool closes, read by blocking waits. */
  closing: SharedArrayBuffer
  /** After the close request, how long the handler may keep its capture open. */
  captureGraceMs: number
}

export type ToWorker = { type: 'start' } | { type: 'close' }

export type FromWorker =
  | { type: 'joined'; fanoutGroup: number; tid: number; cpu: number | null; pinError: FlatError | null }
  | { type: 'stats'; kernel: KernelCounts; handler: Record<string, number> }
  | { type: 'message'; value: unknown }
  | { type: 'error'; phase: 'open' | 'handler'; error: FlatError }
  | { type: 'done' }

export interface FlatError {
  name: string
  message: string
  stack?: string
  fields: Record<string, unknown>
}

/** An error as data that survives `postMessage`. */
export function flattenError(e: unknown): FlatError {
  // Whatever a handler threw, the report must get across: a getter that throws, a stack that is
  // not a string or a value that has no string form cannot be allowed to lose it.
  try {
    if (!(e instanceof Error)) return { name: 'Error', message: `a non-Error was thrown: ${text(e)}`, fields: {} }
    const fields: Record<string, unknown> = {}
    for (const key of Object.keys(e)) {
      try {
        const value = (e as unknown as Record<string, unknown>)[key]
        if (value === undefined || typeof value === 'function' || typeof value === 'symbol') continue
        try {
          structuredClone(value)
          fields[key] = value
        } catch {
          fields[key] = text(value)
        }
      } catch {
        // A getter that throws: the field is left out.
      }
    }
    const flat: FlatError = { name: text(e.name), message: text(e.message), fields }
    if (e.stack !== undefined) flat.stack = text(e.stack)
    return flat
  } catch {
    return { name: 'Error', message: 'a value was thrown that could not be described', fields: {} }
  }
}

function text(value: unknown): string {
  try {
    return String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

/** The error back in this thread: a NetringError again if it was one, else an Error with its fields. */
export function restoreError(flat: FlatError): Error {
  const error =
    flat.name === 'NetringError'
      ? new NetringError('', flat.fields as unknown as ConstructorParameters<typeof NetringError>[1])
      : new Error()
  Object.assign(error, flat.fields)
  Object.defineProperty(error, 'message', { value: flat.message, writable: true, configurable: true })
  if (flat.name !== 'NetringError') Object.defineProperty(error, 'name', { value: flat.name, writable: true, configurable: true })
  if (flat.stack !== undefined) error.stack = flat.stack
  return error
}

export type { ResourceLimits }
