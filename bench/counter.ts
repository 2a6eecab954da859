/**
 * The cost of counting: GET /counter against GET /health (no counting) in the same run, on each
 * backend (PostgreSQL, Redis) and topology (embedded cluster; nginx + 2 replicas where nginx exists).
 *   npm run bench:counter [-- --seconds 10 --connections 64 --redis redis://127.0.0.1:6379]
 */
import os from 'node:os'
import { parseArgs } from 'node:util'
import { formatRun, saturate, type SaturationResult } from './saturate.js'
import { nginxBinary, pin, ServerSide, type TopologyName } from './topology.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }
  }
})
const options = { seconds: Number(values.seconds), connections: Number(values.connections), warmupSeconds: 2 }
const pinning = pin()
const topologies: TopologyName[] = nginxBinary ? ['cluster', 'nginx'] : ['cluster']
if (topologies.length === 1) console.warn('!!! nginx is not installed: the nginx topology is skipped')

console.log(`machine: ${os.cpus()[0].model}, ${os.cpus().length} cores; ${pinning.description}`)
const rows: string[] = []
for (const topology of topologies) {
  for (const backend of ['postgres', 'redis'] as const) {
    const servers = new ServerSide(pinning.serverCpus, 10, backend === 'redis' ? { REDIS_URL: values.redis! } : {})
    try {
      await (topology === 'nginx' ? servers.startNginx() : servers.startCluster())
      // Alternating runs, so that drift (caches, JIT, the disk, the VM) weighs on both alike.
      const plain: SaturationResult[] = []
      const counted: SaturationResult[] = []
      for (let round = 0; round < 2; round++) {
        plain.push(await saturate(servers.url, { method: 'GET', path: () => '/health' }, options))
        counted.push(await saturate(servers.url, { method: 'GET', path: () => '/counter' }, options))
      }
      const [p, c] = [best(plain), best(counted)]
      console.log(formatRun(`${topology}/${backend}: plain /health`, p))
      console.log(formatRun(`${topology}/${backend}: /counter`, c))
      rows.push(
        `${`${topology}/${backend}`.padEnd(17)} counter ${((100 * c.perSecond) / p.perSecond).toFixed(0).padStart(3)} % of plain   ` +
          `p99 ${c.p99.toFixed(2)} ms vs ${p.p99.toFixed(2)} ms`
      )
    } finally {
      await servers.stop()
    }
  }
}
console.log(`\n${options.connections} connections, best of 2 × ${options.seconds} s per route after 2 s warm-ups`)
for (const row of rows) console.log(row)

function best(runs: SaturationResult[]): SaturationResult {
  return runs.reduce((a, b) => (b.perSecond > a.perSecond ? b : a))
}
