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

test('without a matching binary, the error names platform, arch, libc and the package it looked for', (t) => {
  const stderr = loadError("require('netring')", { NAPI_RS_NATIVE_LIBRARY_PATH: '/nonexistent/netring.node' })
  t.regex(stderr, new RegExp(`no native binary for linux/${process.arch} \\(glibc [\\d.]+\\)`))
  t.regex(stderr, new RegExp(`netring-linux-${process.arch}-gnu`))
})
