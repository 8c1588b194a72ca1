// Buffers over ring memory, made at the price of a plain Uint8Array.
//
// `Buffer.from(arrayBuffer, offset, length)` validates its arguments in JavaScript and costs
// about 24 ns; a typed-array constructor costs about 10 ns (measured per packet, bench/). Node's
// own Buffers are instances of an internal `class extends Uint8Array` whose prototype is
// `Buffer.prototype`; RingView is the same construction, so what it makes is a real Buffer
// (`Buffer.isBuffer`, every Buffer method, `slice`/`subarray` give Buffers) and is detached with
// its ArrayBuffer like any view.

class RingView extends Uint8Array {}
Object.setPrototypeOf(RingView.prototype, Buffer.prototype)
Object.defineProperty(RingView.prototype, 'constructor', { value: Buffer, writable: true, configurable: true })

/**
 * A Buffer over `length` bytes of `memory` from `offset`. The caller passes bounds it has
 * checked or read from the ring; out-of-range bounds throw a RangeError, never read outside.
 */
export function ringView(memory: ArrayBuffer, offset: number, length: number): Buffer {
  return new RingView(memory, offset, length) as Buffer
}
