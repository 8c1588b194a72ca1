// What a user sees when netring cannot load: on another OS, and without a matching binary.

import { execFileSync } from 'node:child_process'

import test from 'ava'

const root = new URL('..', import.meta.url).pathname

function loadError(script: string, env: Record<string, string> = {}): string {
  try {
    execFileSync(process.execPath, ['-e', script], { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] })
    return 'loaded'
  } catch (e) {
    return (e as { stderr: string }).stderr
  }
}

test('on another operating system, import fails saying netring is Linux only', (t) => {
  for (const platform of ['darwin', 'win32']) {
    const stderr = loadError(`Object.defineProperty(process, 'platform', { value: '${platform}' }); require('netring')`)
    t.regex(stderr, /netring supports Linux only: AF_PACKET and AF_XDP are Linux kernel interfaces/)
    t.regex(stderr, new RegExp(`this is ${platform}/`))
  }
})

/** The C library as the loader (lib/native.ts) tells it from a process report: glibc when the report names a glibc runtime, musl otherwise. */
function libcOf(report: { header?: { glibcVersionRuntime?: string } }): { name: string; abi: 'gnu' | 'musl' } {
  const glibc = report.header?.glibcVersionRuntime
  return glibc ? { name: `glibc ${glibc}`, abi: 'gnu' } : { name: 'musl', abi: 'musl' }
}

const noBinary = { NAPI_RS_NATIVE_LIBRARY_PATH: '/nonexistent/netring.node' }

test('without a matching binary, the error names platform, arch, the libc of this process and the package it looked for', (t) => {
  // glibc on Debian, musl in the Alpine CI containers: expected as this process reports it.
  const libc = libcOf(process.report.getReport() as { header?: { glibcVersionRuntime?: string } })
  const stderr = loadError("require('netring')", noBinary)
  t.true(stderr.includes(`no native binary for linux/${process.arch} (${libc.name})`), stderr)
  t.true(stderr.includes(`netring-linux-${process.arch}-${libc.abi}`), stderr)
})

test('in a musl process (its process report simulated), the error names musl and the -musl package', (t) => {
  // What Node reports on Alpine: no glibc runtime in the header, the musl loader among the shared objects.
  const simulateMusl = `
    const real = process.report.getReport.bind(process.report)
    process.report.getReport = (...args) => {
      const report = real(...args)
      delete report.header.glibcVersionRuntime
      report.sharedObjects = ['/lib/ld-musl-${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}.so.1', ...report.sharedObjects.filter((o) => !/libc\\.so|ld-linux/.test(o))]
      return report
    }
    require('netring')`
  const stderr = loadError(simulateMusl, noBinary)
  t.true(stderr.includes(`no native binary for linux/${process.arch} (musl)`), stderr)
  t.true(stderr.includes(`netring-linux-${process.arch}-musl`), stderr)
  t.false(stderr.includes(`netring-linux-${process.arch}-gnu`), stderr)
})
