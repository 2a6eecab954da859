/**
 * What an Idempotency-Key costs, in one run: the same writes without the header (the path every
 * request without it takes, unchanged), with a new key per request (claim, write and answer in one
 * transaction), and retries of answered keys (replays), through the embedded cluster on one CPU.
 *   npm run bench:idempotency [-- --seconds 10 --connections 16,64]
 */
import os from 'node:os'
import { randomUUID } from 'node:crypto'
import { parseArgs } from 'node:util'
import { formatRun, saturate, type SaturationResult, type Target } from './saturate.js'
import { login } from './session.js'
import { pin, ServerSide } from './topology.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '16,64' }
  }
})
const seconds = Number(values.seconds)
const pinning = pin()
const run = randomUUID().slice(0, 8)
// Replays cycle over keys answered before the timed part: a pool of this many first answers.
const replayKeys = 1000

const cluster = new ServerSide(pinning.serverCpus, 10)
await cluster.startCluster()
try {
  const auth = { authorization: `Bearer ${await login(cluster.url)}` }
  console.log(
    `machine: ${os.cpus()[0].model}, ${os.cpus().length} cores; ${pinning.description}; ${cluster.description}`
  )
  // Credits on the client with the largest limit: every request is a write that succeeds.
  const credit: Target = {
    method: 'POST',
    path: () => '/clientes/4/transacoes',
    body: () => '{"valor":1,"tipo":"c","descricao":"bench"}'
  }
  const increment: Target = {
    method: 'POST',
    path: () => '/increment',
    headers: auth,
    body: (n) => JSON.stringify({ key: `bench-${n % 1000}`, value: 1 })
  }
  const fresh = (prefix: string) => (n: number) => ({ 'idempotency-key': `${run}-${prefix}-${n}` })
  const answered = (prefix: string) => (n: number) => ({
    'idempotency-key': `${run}-${prefix}-replay-${n % replayKeys}`
  })
  await prime(credit, answered('credit'))
  await prime({ ...increment, body: () => JSON.stringify({ key: 'bench-replayed', value: 1 }) }, answered('increment'))

  for (const connections of values.connections!.split(',').map(Number)) {
    const options = { seconds, connections, warmupSeconds: 2 }
    console.log(`\n${connections} connections, ${seconds} s after a 2 s warm-up`)
    for (const [name, target, prefix] of [
      ['POST /clientes/4/transacoes', credit, 'credit'],
      ['POST /increment', increment, 'increment']
    ] as const) {
      const plain = await saturate(cluster.url, target, options)
      const keyed = await saturate(cluster.url, { ...target, headersOf: fresh(`${prefix}-${connections}`) }, options)
      const replayed = await saturate(
        cluster.url,
        {
          ...target,
          body: prefix === 'increment' ? () => JSON.stringify({ key: 'bench-replayed', value: 1 }) : target.body,
          headersOf: answered(prefix)
        },
        options
      )
      console.log(formatRun(`${name}, no key`, plain))
      console.log(formatRun(`${name}, a new key each`, keyed))
      console.log(formatRun(`${name}, replays`, replayed))
      console.log(`  new key: ${ratios(keyed, plain)}   replay: ${ratios(replayed, plain)}`)
    }
  }
} finally {
  await cluster.stop()
}

function ratios(run: SaturationResult, baseline: SaturationResult): string {
  return `${(run.perSecond / baseline.perSecond).toFixed(2)}× the req/s, ${(run.p50 / baseline.p50).toFixed(2)}× p50, ${(run.p99 / baseline.p99).toFixed(2)}× p99 of no key`
}

/** Answers every replayed key once, so the timed replays find their first answer. */
async function prime(target: Target, headersOf: (n: number) => Record<string, string>) {
  for (let n = 0; n < replayKeys; n++) {
    await fetch(`${cluster.url}${target.path(n)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...target.headers, ...headersOf(n) },
      body: target.body!(n)
    }).then((res) => res.text())
  }
}
