// The one error type of netring, and the one conversion from native errors to it.

import { constants } from 'node:os'

export interface NetringErrorFields {
  /** Node-style code: the errno's symbolic name (`ENODEV`, `EPERM`, `EINVAL`, ...). */
  code: string
  /** The errno number, positive, as the kernel returned it. */
  errno: number
  /** The system call that failed, when one did. */
  syscall?: string
  /** The interface the error is about. */
  interface?: string
  /** The option the error is about, spelled as in the options object (`blockSize`). */
  option?: string
  /** What to do about it. */
  hint?: string
}

// The codes the facade raises itself (everything else comes from the engine with its errno);
// their numbers come from Node's table of the OS's errno values.
type OwnCode = 'EPERM' | 'ENOENT' | 'EIO' | 'EBADF' | 'EBUSY' | 'EINVAL'

export class NetringError extends Error implements NetringErrorFields {
  override name = 'NetringError'
  code: string
  errno: number
  syscall?: string
  interface?: string
  option?: string
  hint?: string

  constructor(message: string, fields: NetringErrorFields, options?: ErrorOptions) {
    super(fields.hint ? `${message}. Hint: ${fields.hint}` : message, options)
    this.code = fields.code
    this.errno = fields.errno
    if (fields.syscall !== undefined) this.syscall = fields.syscall
    if (fields.interface !== undefined) this.interface = fields.interface
    if (fields.option !== undefined) this.option = fields.option
    if (fields.hint !== undefined) this.hint = fields.hint
  }

  /** An option the facade refuses before anything reaches the kernel. */
  static invalidOption(option: string, why: string): NetringError {
    return new NetringError(`invalid option ${option}: ${why}`, { code: 'EINVAL', errno: constants.errno.EINVAL, option })
  }

  /** An error of our own with a well-known code. */
  static of(code: OwnCode, message: string, fields: Partial<NetringErrorFields> = {}): NetringError {
    return new NetringError(message, { code, errno: constants.errno[code], ...fields })
  }

  /**
   * Turns an error from the binding into a `NetringError`. The binding throws engine errors as
   * `Error`s carrying netring's fields as properties (marked `netringNative`). A native error
   * without them is one napi-rs raised itself: an argument of the wrong type (EINVAL), a call on
   * an object already inside a call (EBUSY), or a Rust panic the binding caught (EIO: a bug in
   * netring, never a crash). Anything else passes through.
   */
  static fromNative(error: unknown): unknown {
    if (!(error instanceof Error)) return error
    if ((error as { netringNative?: unknown }).netringNative === true) {
      return new NetringError(error.message, error as Error & NetringErrorFields)
    }
    const status = (error as { code?: unknown }).code
    if (status === 'GenericFailure') {
      return NetringError.of('EIO', `internal error in netring's native code: ${error.message}`, {
        hint: 'this is a bug in netring; the object that raised it may be unusable, please report the message',
      })
    }
    // napi-rs refuses a call on an object already inside a call (a getter, Proxy trap or valueOf
    // of an argument that calls back into it): the object is busy, the argument was fine.
    if (status === 'InvalidArg' && /cannot be borrowed/.test(error.message)) {
      return NetringError.of('EBUSY', 'the socket is in the middle of another call on it', {
        hint: 'a getter, Proxy trap or valueOf of an argument called back into the same socket; make that call after the outer one returns',
      })
    }
    if (typeof status === 'string' && /Expected$|^InvalidArg$/.test(status)) {
      return NetringError.of('EINVAL', `invalid argument: ${error.message}`)
    }
    return error
  }
}

/** Runs a native call, turning its errors into `NetringError`. */
export function callNative<T>(fn: () => T): T {
  try {
    return fn()
  } catch (e) {
    throw NetringError.fromNative(e)
  }
}

/**
 * `callNative` for a call that takes lent memory back: one that could not (a buffer moved away
 * or marked untransferable) closed its socket and throws EPERM; `closedItself` then finishes the
 * close as close() would (tells waiting frames, emits 'close') before the error goes on.
 */
export function callTakingBack<T>(fn: () => T, socket: { readonly closed: boolean }, closedItself: () => void): T {
  try {
    return callNative(fn)
  } catch (e) {
    if (socket.closed) closedItself()
    throw e
  }
}

/** The error async iterators throw when their `AbortSignal` fires, shaped like Node's own. */
export function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal.reason }), {
    name: 'AbortError',
    code: 'ABORT_ERR',
  })
}
