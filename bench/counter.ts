/**
 * The cost of counting: GET /counter against GET /health (no counting) in the same run, through
 * the embedded cluster, with PostgreSQL and with Redis as the counter's store.
 *   npm run bench:counter [-- --seconds 10 --connections 64 --redis redis://127.0.0.1:6379]
 */
import os from 'node:os'
import { parseArgs } from 'node:util'
import { pinLoadGenerator, startEmbeddedCluster } from './cluster.js'
import { formatRun, saturate, type SaturationResult } from './saturate.js'

pinLoadGenerator()
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }
  }
})
const options = { seconds: Number(values.seconds), connections: Number(values.connections), warmupSeconds: 2 }

console.log(`machine: ${os.cpus()[0].model}, ${os.cpus().length} cores; server on core 1, load on core 0`)
const rows: string[] = []
for (const backend of ['postgres', 'redis'] as const) {
  const cluster = await startEmbeddedCluster(backend === 'redis' ? { REDIS_URL: values.redis! } : {})
  try {
    // Alternating runs so that drift (caches, JIT, the disk) weighs on both alike.
    const plain: SaturationResult[] = []
    const counted: SaturationResult[] = []
    for (let round = 0; round < 2; round++) {
      plain.push(await saturate(cluster.url, { method: 'GET', path: () => '/health' }, options))
      counted.push(await saturate(cluster.url, { method: 'GET', path: () => '/counter' }, options))
    }
    const best = (runs: SaturationResult[]) => runs.reduce((a, b) => (b.perSecond > a.perSecond ? b : a))
    const [p, c] = [best(plain), best(counted)]
    console.log(formatRun(`${backend}: plain /health`, p))
    console.log(formatRun(`${backend}: /counter`, c))
    rows.push(`${backend.padEnd(8)} counter/plain throughput ${(100 * c.perSecond / p.perSecond).toFixed(0)} %   p99 ${c.p99.toFixed(2)} ms vs ${p.p99.toFixed(2)} ms`)
  } finally {
    await cluster.stop()
  }
}
console.log(`\nembedded cluster (2 workers), ${options.connections} connections, best of 2 × ${options.seconds} s each`)
for (const row of rows) console.log(row)
