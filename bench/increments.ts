/**
 * Sustained increments through the embedded cluster, a few hot keys and many cold ones, against a
 * plain route with the same authentication and no increment work (GET /api/sessions), in one run.
 * Prints increments/s, p50/p99, PostgreSQL commits/s and increments per commit (the batching).
 *   npm run bench:increments [-- --seconds 10 --connections 64]
 */
import os from 'node:os'
import { parseArgs } from 'node:util'
import postgres from 'postgres'
import { formatRun, saturate } from './saturate.js'
import { login } from './session.js'
import { pin, ServerSide } from './topology.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '16,64,256' }
  }
})
const seconds = Number(values.seconds)
const pinning = pin()

const cluster = new ServerSide(pinning.serverCpus, 10)
await cluster.startCluster()
const sql = postgres(cluster.databaseUrl, { max: 1, onnotice: () => {} })
try {
  const token = await login(cluster.url)
  const auth = { authorization: `Bearer ${token}` }
  console.log(
    `machine: ${os.cpus()[0].model}, ${os.cpus().length} cores; ${pinning.description}; ${cluster.description}`
  )
  for (const connections of values.connections!.split(',').map(Number)) {
    const options = { seconds, connections, warmupSeconds: 2 }
    const plain = await saturate(cluster.url, { method: 'GET', path: () => '/api/sessions', headers: auth }, options)

    const before = await figures(cluster.url)
    const increments = await saturate(
      cluster.url,
      {
        method: 'POST',
        path: () => '/increment',
        headers: auth,
        body: (n) =>
          JSON.stringify({
            key: n % 2 ? `hot-${n % 5}` : `cold-${Math.floor(Math.random() * 100_000)}`,
            value: 1 + (n % 100)
          })
      },
      options
    )
    const after = await figures(cluster.url)

    const transactions = after.transactions - before.transactions
    const batches = after.batches - before.batches
    const committed = after.committed - before.committed
    console.log(`\n${connections} connections, ${seconds} s after a 2 s warm-up`)
    console.log(formatRun('plain GET /api/sessions (auth)', plain))
    console.log(formatRun('POST /increment', increments))
    console.log(
      `increments/plain ${((100 * increments.perSecond) / plain.perSecond).toFixed(0)} %   ` +
        `increment commits/s ${(batches / (seconds + 2)).toFixed(0)}, ${(committed / batches).toFixed(1)} increments each   ` +
        `(PostgreSQL transactions/s ${(transactions / (seconds + 2)).toFixed(0)}, the session look-ups' read-only ones included; warm-up included)`
    )
  }
} finally {
  await sql.end()
  await cluster.stop()
}

/** PostgreSQL's transaction count, and the batcher's figures summed over the workers. */
async function figures(url: string) {
  const [{ transactions }] = await sql<
    { transactions: string }[]
  >`select xact_commit as transactions from pg_stat_database where datname = current_database()`
  const metrics = await (await fetch(`${url}/metrics`)).text()
  const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? 0)
  return {
    transactions: Number(transactions),
    batches: read('tandem_increments_per_commit_count'),
    committed: read('tandem_increments_committed_total')
  }
}
