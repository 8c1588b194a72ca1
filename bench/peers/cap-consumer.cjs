// The npm package `cap` (libpcap through a Node addon) as a consumer, for the bench.
//   node cap-consumer.cjs drain <iface> <expected-file>   count until the number in the file
//   node cap-consumer.cjs live <iface> <seconds>          count for <seconds>
// Prints "ready" once capturing, then one JSON line.
const { Cap } = require('cap')

const [mode, iface, arg] = process.argv.slice(2)
const cap = new Cap()
const buffer = Buffer.alloc(65535)
cap.open(iface, '', 400 * 1024 * 1024, buffer)
if (cap.setMinBytes) cap.setMinBytes(0)
let n = 0
let sum = 0
let expected = Infinity
let t0
let last
const done = () => {
  console.log(JSON.stringify({ packets: n, ms: Number(last - t0) / 1e6, sum }))
  process.exit(0)
}
cap.on('packet', (nbytes) => {
  last = process.hrtime.bigint()
  if (n === 0) {
    t0 = last
    if (mode === 'drain') {
      expected = Number(require('node:fs').readFileSync(arg, 'utf8'))
      // libpcap may have dropped some of them: stop once nothing came for half a second.
      setInterval(() => Number(process.hrtime.bigint() - last) > 500e6 && done(), 100)
    }
  }
  sum += buffer[0] + nbytes
  if (++n === expected) done()
})
console.log('ready')
if (mode === 'live') {
  const cpu0 = process.cpuUsage()
  setTimeout(() => {
    const cpu = process.cpuUsage(cpu0)
    console.log(JSON.stringify({ packets: n, cpuNs: (cpu.user + cpu.system) * 1000 }))
    process.exit(0)
  }, Number(arg) * 1000)
}
