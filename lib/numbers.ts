// The numbers users pass (timeouts, sizes, counts), checked in one place so that every method
// gives the same answer to the same number: `Infinity` is "no limit" where a limit is optional,
// NaN, negatives and non-numbers are EINVAL naming the option. Nothing that reaches the binding
// afterwards can be a number the native side would have to guess about.

import { NetringError } from './errors'

/** How a refused value is shown in the error message. */
export function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v)
  if (Array.isArray(v)) return 'an array'
  if (v === null) return 'null'
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`
}

/**
 * A wait's limit in milliseconds: a number >= 0, or `Infinity` (and `undefined`) for no limit,
 * returned as `undefined`. Finite values beyond any real wait are no limit too.
 */
export function timeoutMs(v: unknown, option = 'timeoutMs'): number | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) {
    throw NetringError.invalidOption(option, `must be a number of milliseconds >= 0 (Infinity: no limit), got ${describe(v)}`)
  }
  // 2^31 - 1 ms (~24.8 days) is the longest wait poll() and timers take; past that is forever.
  return v > MAX_WAIT_MS ? undefined : v
}

/** A count limit (`limit`, `iterations`): a whole number >= 0, or `Infinity` for none. */
export function countLimit(v: unknown, option: string): number {
  if (v === Infinity) return v
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw NetringError.invalidOption(option, `must be an integer >= 0 (Infinity: no limit), got ${describe(v)}`)
  }
  return v
}

/** A size, count or index: a whole number from `min` to `max`. */
export function integer(v: unknown, option: string, min = 0, max = 0xffff_ffff): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw NetringError.invalidOption(option, `must be an integer from ${min} to ${max}, got ${describe(v)}`)
  }
  return v
}

export const MAX_WAIT_MS = 2 ** 31 - 1
