// Loads the native addon through the loader that `napi build --platform` generates (../index.js),
// with messages that say what is wrong when it cannot.

import os from 'node:os'

import type * as Binding from '../index.js'

function load(): typeof Binding {
  if (process.platform !== 'linux') {
    throw new Error(
      `netring supports Linux only: AF_PACKET and AF_XDP are Linux kernel interfaces (this is ${process.platform}/${process.arch})`,
    )
  }
  if (os.endianness() !== 'LE') {
    // The facade reads ring headers in host order through little-endian typed arrays.
    throw new Error(`netring supports little-endian hosts only (this is ${process.arch})`)
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('../index.js') as typeof Binding
  } catch (cause) {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined
    const libc = report?.header?.glibcVersionRuntime ? `glibc ${report.header.glibcVersionRuntime}` : 'musl'
    throw new Error(
      `netring has no native binary for linux/${process.arch} (${libc}), or it failed to load. ` +
        `It looked for the package netring-linux-${process.arch}-${libc.startsWith('glibc') ? 'gnu' : 'musl'} ` +
        `and for a locally built netring.linux-${process.arch}-*.node. Reinstall without --no-optional / ` +
        `--omit=optional, or build from source with a Rust toolchain (npm run build).`,
      { cause },
    )
  }
}

export const native = load()
export type { Binding }
