// Runs one job of a GitHub workflow file on this machine, as the sandbox user: its `run:` steps
// exactly as written (expressions filled in, `bash -eo pipefail` as on GitHub), its `uses:`
// steps through small stand-ins for the few actions the workflows use. An action without a
// stand-in, or a `run:` step the job cannot reach, fails the proof instead of being skipped.
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { load as parseYaml } from 'js-yaml'

import { chownToUser, runAs, userEnv } from './sandbox.mjs'

/** The parsed workflow at `path`. */
export function loadWorkflow(path) {
  return parseYaml(readFileSync(path, 'utf8'))
}

// ---- expressions: the subset the workflows use (contexts, ==, !=, !, &&, ||, a few functions)

const TOKEN = /\s*(?:'((?:[^']|'')*)'|(\d+(?:\.\d+)?)\b|(&&|\|\||==|!=|[!(),])|([A-Za-z_][\w-]*(?:\.[\w-]+)*))/y
const FUNCTIONS = {
  contains: (a, b) => String(a ?? '').toLowerCase().includes(String(b ?? '').toLowerCase()),
  startsWith: (a, b) => String(a ?? '').toLowerCase().startsWith(String(b ?? '').toLowerCase()),
  endsWith: (a, b) => String(a ?? '').toLowerCase().endsWith(String(b ?? '').toLowerCase()),
  hashFiles: () => 'hash',
}

/** Evaluates a workflow expression (without `${{ }}`) against `contexts`. */
export function evaluate(source, contexts) {
  const tokens = []
  TOKEN.lastIndex = 0
  while (TOKEN.lastIndex < source.trim().length) {
    const m = TOKEN.exec(source.trim())
    if (!m) throw new Error(`unsupported expression: ${source}`)
    tokens.push(m[1] !== undefined ? { value: m[1].replaceAll("''", "'") } : m[2] !== undefined ? { value: Number(m[2]) } : m[3] ? { op: m[3] } : { name: m[4] })
  }
  let i = 0
  const peek = (op) => tokens[i]?.op === op
  const expect = (op) => {
    if (!peek(op)) throw new Error(`expected ${op} in: ${source}`)
    i++
  }
  const equal = (a, b) => (typeof a === 'string' && typeof b === 'string' ? a.toLowerCase() === b.toLowerCase() : a == b) // eslint-disable-line eqeqeq
  const primary = () => {
    const t = tokens[i++]
    if (!t) throw new Error(`unexpected end of: ${source}`)
    if (t.op === '!') return !primary()
    if (t.op === '(') {
      const v = or()
      expect(')')
      return v
    }
    if ('value' in t) return t.value
    if (t.name && peek('(')) {
      i++
      const args = []
      while (!peek(')')) {
        args.push(or())
        if (peek(',')) i++
      }
      expect(')')
      if (!FUNCTIONS[t.name]) throw new Error(`unsupported function ${t.name} in: ${source}`)
      return FUNCTIONS[t.name](...args)
    }
    if (t.name === 'true' || t.name === 'false') return t.name === 'true'
    if (t.name === 'null') return null
    return t.name.split('.').reduce((object, key) => (object == null ? undefined : object[key]), contexts)
  }
  const comparison = () => {
    let v = primary()
    while (peek('==') || peek('!=')) {
      const op = tokens[i++].op
      const w = primary()
      v = op === '==' ? equal(v, w) : !equal(v, w)
    }
    return v
  }
  const and = () => {
    let v = comparison()
    while (peek('&&')) {
      i++
      const w = comparison()
      v = v ? w : v
    }
    return v
  }
  const or = () => {
    let v = and()
    while (peek('||')) {
      i++
      const w = and()
      v = v ? v : w
    }
    return v
  }
  const value = or()
  if (i !== tokens.length) throw new Error(`unsupported expression: ${source}`)
  return value
}

/** `text` with every `${{ expr }}` replaced by its value. */
export function interpolate(text, contexts) {
  return String(text).replace(/\$\{\{(.*?)\}\}/g, (_, expr) => String(evaluate(expr, contexts) ?? ''))
}

const condition = (cond, contexts) => cond === undefined || Boolean(evaluate(String(cond).replace(/^\s*\$\{\{(.*)\}\}\s*$/s, '$1'), contexts))

/** The matrix values of `job` for the combination `wanted` (e.g. { target: '…' }), `include` rows merged in as GitHub does. */
export function matrixFor(job, wanted) {
  const matrix = job.strategy?.matrix ?? {}
  const dimensions = Object.keys(matrix).filter((k) => k !== 'include' && k !== 'exclude')
  for (const key of dimensions) {
    if (!matrix[key].map(String).includes(String(wanted[key]))) throw new Error(`the matrix has no ${key} ${wanted[key]}`)
  }
  if (dimensions.length === 0) {
    const row = (matrix.include ?? []).find((inc) => Object.entries(wanted).every(([k, v]) => String(inc[k]) === String(v)))
    if (!row) throw new Error(`the matrix has no row ${JSON.stringify(wanted)}`)
    return { ...row }
  }
  const values = { ...wanted }
  for (const inc of matrix.include ?? []) {
    if (Object.keys(inc).filter((k) => dimensions.includes(k)).every((k) => String(inc[k]) === String(values[k]))) Object.assign(values, inc)
  }
  return values
}

// ---- actions: stand-ins for the ones the workflows use

/** Files matched by upload-artifact's `path` lines: top-level globs, files, or one directory. */
function matchUpload(workspace, lines) {
  const matched = []
  for (const line of lines) {
    if (line.includes('/')) throw new Error(`upload-artifact stand-in: only top-level paths are supported (${line})`)
    const pattern = new RegExp(`^${line.replace(/[.+^$()|[\]{}]/g, '\\$&').replaceAll('*', '[^/]*')}$`)
    matched.push(...readdirSync(workspace).filter((f) => pattern.test(f)))
  }
  return matched
}

const ACTIONS = {
  'actions/checkout': async () => {},
  'actions/cache': async (ctx) => ctx.log('cache: nothing restored (a cold cache)'),
  'dtolnay/rust-toolchain': async (ctx, inputs) => {
    // The toolchain is the machine's; a target it lacks cannot be installed here.
    const installed = ctx.capture('rustup', ['target', 'list', '--installed'])
    for (const target of String(inputs.targets ?? '').split(',').map((t) => t.trim()).filter(Boolean)) {
      if (!installed.includes(target)) throw new Error(`rust target ${target} is not installed here`)
    }
  },
  'actions/setup-node': async (ctx, inputs) => {
    const bin = join(ctx.sandbox.toolcache, String(inputs['node-version']), 'bin')
    if (!existsSync(bin)) throw new Error(`no Node ${inputs['node-version']} in the tool cache`)
    ctx.env.PATH = `${bin}:${ctx.env.PATH}`
    if (inputs['registry-url']) {
      // As setup-node does: an .npmrc naming the registry, with the token from NODE_AUTH_TOKEN.
      const url = ctx.registryFor(inputs['registry-url'])
      const npmrc = join(ctx.env.RUNNER_TEMP, '.npmrc')
      writeFileSync(npmrc, `//${new URL(url).host}${new URL(url).pathname}:_authToken=\${NODE_AUTH_TOKEN}\nregistry=${url}\n`)
      chownToUser(ctx.sandbox, npmrc)
      ctx.env.NPM_CONFIG_USERCONFIG = npmrc
    }
  },
  'actions/upload-artifact': async (ctx, inputs) => {
    const lines = String(inputs.path).split('\n').map((l) => l.trim()).filter(Boolean)
    const dest = join(ctx.artifacts, inputs.name)
    mkdirSync(dest, { recursive: true })
    const files = matchUpload(ctx.workspace, lines)
    if (files.length === 0 && inputs['if-no-files-found'] === 'error') throw new Error(`upload-artifact ${inputs.name}: no files match ${lines.join(', ')}`)
    // One directory uploads its contents; files keep their names (GitHub's least common ancestor).
    if (files.length === 1 && statSync(join(ctx.workspace, files[0])).isDirectory()) cpSync(join(ctx.workspace, files[0]), dest, { recursive: true })
    else for (const f of files) cpSync(join(ctx.workspace, f), join(dest, f), { recursive: true })
    ctx.log(`artifact ${inputs.name}: ${readdirSync(dest).join(', ')}`)
  },
  'actions/download-artifact': async (ctx, inputs) => {
    const dest = join(ctx.workspace, inputs.path ?? '.')
    const names = inputs.name ? [inputs.name] : readdirSync(ctx.artifacts)
    for (const name of names) {
      if (!existsSync(join(ctx.artifacts, name))) throw new Error(`download-artifact: no artifact ${name}`)
      cpSync(join(ctx.artifacts, name), inputs.name ? dest : join(dest, name), { recursive: true })
    }
    chownToUser(ctx.sandbox, dest)
  },
}

/**
 * Runs `jobId` of `workflow` in `workspace` (a checkout the sandbox user owns) with `matrix`.
 * `github`/`secrets`: those contexts. `artifacts`: the directory standing in for the run's artifact
 * store. `env`: environment over the sandbox user's (before the workflow's own). `override`:
 * { [envName]: value } applied last, each said out loud. `registryFor(url)`: the registry to use
 * for a setup-node `registry-url`. `asRoot(step)`: whether a run step runs as root (a container).
 */
export async function runJob({ workflow, jobId, matrix = {}, sandbox, workspace, artifacts, github = {}, secrets = {}, env = {}, override = {}, registryFor = (u) => u, asRoot = () => false }) {
  const job = workflow.jobs[jobId]
  const log = (text) => console.log(`   [${jobId}] ${text}`)
  const runnerTemp = join(sandbox.work, `temp-${jobId}`)
  mkdirSync(runnerTemp, { recursive: true })
  chownToUser(sandbox, runnerTemp)
  const ctx = {
    sandbox,
    workspace,
    artifacts,
    log,
    registryFor,
    env: userEnv(sandbox, { GITHUB_WORKSPACE: workspace, RUNNER_TEMP: runnerTemp, GITHUB_REF_NAME: github.ref_name ?? '', GITHUB_REPOSITORY: github.repository ?? '', ...env }),
    capture: (command, args) => execFileSync(command, args, { cwd: workspace, env: ctx.env, uid: sandbox.uid, gid: sandbox.gid, encoding: 'utf8' }),
  }
  const contexts = () => ({ matrix, github: { workspace, ...github }, secrets, env: ctx.env, runner: { os: 'Linux', arch: 'X64', temp: runnerTemp } })
  for (const [k, v] of Object.entries(job.env ?? {})) ctx.env[k] = interpolate(v, contexts())
  console.log(`\n== ${jobId}${Object.keys(matrix).length ? ` ${JSON.stringify(matrix)}` : ''}: ${interpolate(job['runs-on'], contexts())}`)
  const said = new Set()
  for (const [index, step] of (job.steps ?? []).entries()) {
    const label = step.name ? interpolate(step.name, contexts()) : (step.uses ?? step.run.split('\n')[0])
    if (!condition(step.if, contexts())) {
      log(`skip: ${label} (if: ${step.if})`)
      continue
    }
    const stepEnv = { ...ctx.env }
    for (const [k, v] of Object.entries(step.env ?? {})) stepEnv[k] = interpolate(v, contexts())
    for (const [k, v] of Object.entries(override)) {
      if (k in stepEnv && stepEnv[k] !== v && !said.has(k)) log(`${k}=${v} here, instead of ${stepEnv[k]}`)
      said.add(k)
      stepEnv[k] = v
    }
    if (step.uses) {
      const action = step.uses.split('@')[0]
      if (!ACTIONS[action]) throw new Error(`step ${index + 1} uses ${step.uses}, which has no stand-in here`)
      const inputs = Object.fromEntries(Object.entries(step.with ?? {}).map(([k, v]) => [k, interpolate(v, contexts())]))
      log(`uses ${step.uses}`)
      await ACTIONS[action](ctx, inputs)
      continue
    }
    const script = interpolate(step.run, contexts())
    const root = asRoot(script)
    log(`run${root ? ' (as root, as in its container)' : ''}: ${script.trim()}`)
    const status = await runAs(sandbox, 'bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', script], { cwd: workspace, env: stepEnv, asRoot: root })
    if (status !== 0) throw new Error(`${jobId}: step ${index + 1} (${label}) failed with exit ${status}`)
  }
}
