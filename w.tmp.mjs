import { Worker } from 'node:worker_threads'
import { readFileSync } from 'node:fs'
const packetSockets = () => readFileSync('/proc/net/packet', 'utf8').trim().split('\n').length - 1
const before = packetSockets()
for (let i = 0; i < 5; i++) {
  const w = new Worker(`
    const { Capture } = require('netring')
    const cap = Capture.open('lo', { blockTimeoutMs: 1 })
    ;(async () => { for await (const p of cap) { globalThis.keep = p.data } })()
    require('node:worker_threads').parentPort.postMessage('ready')
  `, { eval: true })
  await new Promise((r) => w.once('message', r))
  await w.terminate()
}
await new Promise((r) => setTimeout(r, 200))
console.log('packet sockets before', before, 'after', packetSockets())
