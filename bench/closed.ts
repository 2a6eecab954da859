/**
 * Tandem against a minimal node:http + postgres.js server (bench/baseline/server.mjs) on the crebitos
 * routes, closed model: N connections each sending the next request as soon as the last is answered.
 * One private, durable PostgreSQL (`node dist/main.js postgres`); Tandem (one `serve` replica), the
 * baseline on Tandem's tables and the baseline on UNLOGGED copies of them, all on CPU 1, loaded in
 * turn from CPU 0, the order rotating every round, so every ratio comes from the same minutes.
 *   npm run bench:closed [-- --connections 16 --seconds 10 --rounds 3 --pool-max 10 --nginx]
 */
import { spawnSync } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { freePort } from '../src/platform/processes.js'
import { startNginx } from '../test/helpers/nginx.js'
import { removeDataDir } from '../test/helpers/postgres.js'
import { launch, stopLaunched, waitForLine, waitHealthy, type Launched } from '../test/helpers/processes.js'
import { launchMain } from '../test/helpers/servers.js'
import { baselineScript, rinhaNodeOptions, type ApiName } from './topology.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '2' },
    'pool-max': { type: 'string' },
    // tandem[@<dist dir>][:NAME=value;NAME=value] (another build, e.g. a copy of dist/ from before a change,
    // and environment of its own) | baseline | unlogged | fastify (bench/baseline/fastify.mjs)
    targets: { type: 'string', default: 'tandem,baseline,unlogged' },
    nginx: { type: 'boolean', default: false },
    // Extra environment for the Tandem replica, NAME=value,NAME=value (e.g. LOG_LEVEL=warn).
    'tandem-env': { type: 'string', default: '' },
    // Runs the Tandem replica under `node --cpu-prof`, the profile written into this directory.
    'cpu-prof': { type: 'string' },
    // Samples where every server allocates, over its measured windows: <dir>/<server>.heapprofile (gc-meter.mjs).
    'alloc-prof': { type: 'string' }
  }
})
const connections = Number(values.connections)
const seconds = Number(values.seconds)
const rounds = Number(values.rounds)
const warmupSeconds = Number(values.warmup)
const serverCpus = '1'
const keepChars = 16_384
const startTimeoutMs = 120_000

/** Everything started, stopped in reverse by `cleanUp`. */
const stops: Array<() => Promise<unknown>> = []
const dir = await mkdtemp(path.join(os.tmpdir(), 'tandem-closed-'))
// Started by root, PostgreSQL runs as the `postgres` user, which must reach its data directory.
await chmod(dir, 0o755)
const dataDir = path.join(dir, 'data')

/** On CPU 1 in a process group of its own (the test harness's launch), stopped with the group by `cleanUp`. */
function start(name: string, command: string[], env: Record<string, string>): Launched {
  const launched = launch(name, command, { env, cpus: serverCpus, keepChars })
  stops.push(() => stopLaunched(launched))
  return launched
}

let cleaning: Promise<void> | undefined
/** Everything started, in reverse; then the postmaster if its supervisor left it behind, then the files. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {})
    await removeDataDir(dataDir)
    await rm(dir, { recursive: true, force: true })
  })()
  return cleaning
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping everything started`)
    void cleanUp().finally(() => process.exit(130))
  })
}

interface Server {
  name: string
  url: string
  pid: number
  /** Where the server's gc-meter.mjs writes the figures of its last window, and how many it has closed. */
  gcFile: string
  gcWindows: number
}

const gcMeter = pathToFileURL(path.join(root, 'bench', 'gc-meter.mjs')).href

/**
 * The environment of a Node.js server with gc-meter.mjs preloaded, after whatever NODE_OPTIONS it
 * was given (deploy/compose.rinha.yaml's, or --tandem-env's).
 */
function metered(name: string, env: Record<string, string>): Record<string, string> {
  return {
    ...env,
    NODE_OPTIONS: `${env.NODE_OPTIONS ?? ''} --import ${gcMeter}`.trim(),
    BENCH_GC_FILE: gcFileOf(name),
    ...(values['alloc-prof'] && {
      BENCH_ALLOC_PROFILE: path.resolve(values['alloc-prof'], `${fileName(name)}.heapprofile`)
    })
  }
}

/** A server's name as a file name (`tandem@dir:A=1` has characters a path should not). */
const fileName = (name: string) => name.replace(/[^\w.-]+/g, '_')
const gcFileOf = (name: string) => path.join(dir, `${fileName(name)}.gc.json`)

async function startPostgres(): Promise<string> {
  const database = launchMain(
    'postgres',
    ['postgres'],
    { NODE_ENV: 'production', DATA_DIR: dataDir },
    { cpus: serverCpus, keepChars }
  )
  stops.push(() => stopLaunched(database))
  return waitForLine(database, /^DATABASE_URL=(\S+)$/m, startTimeoutMs)
}

async function startServer(name: string, databaseUrl: string, poolMax: string | undefined): Promise<Server> {
  const port = await freePort()
  const common = { PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: databaseUrl }
  const pool: Record<string, string> = poolMax === undefined ? {} : { DATABASE_POOL_MAX: poolMax }
  const baseline = name.startsWith('tandem') ? undefined : baselineScript(name as Exclude<ApiName, 'tandem'>)
  const server = !baseline
    ? start(
        name,
        [
          process.execPath,
          ...(values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values['cpu-prof'])}`] : []),
          path.join(name.split(':')[0].split('@')[1] ?? 'dist', 'main.js'),
          'serve'
        ],
        metered(name, {
          // As deploy/compose.rinha.yaml runs a replica (and bench/topology.ts starts one): without an
          // access line per request (LOG_LEVEL=warn), which --tandem-env LOG_LEVEL=info gives back.
          NODE_ENV: 'production',
          LOG_LEVEL: 'warn',
          NODE_OPTIONS: rinhaNodeOptions(),
          ...(values.nginx && { TRUST_PROXY: '1' }),
          ...pool,
          ...common,
          ...Object.fromEntries(
            [...values['tandem-env']!.split(','), ...(name.split(':')[1]?.split(';') ?? [])]
              .filter(Boolean)
              // At the first '=': a value may hold more (NODE_OPTIONS=--max-semi-space-size=8).
              .map((pair) => {
                const at = pair.indexOf('=')
                return [pair.slice(0, at), pair.slice(at + 1)]
              })
          )
        })
      )
    : start(
        name,
        [process.execPath, baseline.script],
        metered(name, {
          NODE_OPTIONS: rinhaNodeOptions(),
          ...common,
          ...pool,
          ...(baseline.unlogged && { UNLOGGED: '1' })
        })
      )
  const url = `http://127.0.0.1:${port}`
  await waitHealthy(url, [server], startTimeoutMs)
  const pid = server.child.pid!
  const gcFile = gcFileOf(name)
  if (!values.nginx) return { name, url, pid, gcFile, gcWindows: 0 }
  // deploy/nginx/nginx.conf with one worker, its upstream this server (the test harness's nginx).
  const nginx = await startNginx([`127.0.0.1:${port}`], { workers: 1, cpus: serverCpus })
  stops.push(() => nginx.stop())
  return { name, url: nginx.url, pid, gcFile, gcWindows: 0 }
}

interface Route {
  name: string
  method: 'GET' | 'POST'
  path: (n: number) => string
  body?: (n: number) => string
}

// Clients 1–5 in turn; a credit then a debit of 1, so every write is a 200 and no balance drifts.
const routes: Route[] = [
  {
    name: 'POST /clientes/:id/transacoes',
    method: 'POST',
    path: (n) => `/clientes/${(n % 5) + 1}/transacoes`,
    body: (n) => `{"valor":1,"tipo":"${(n >> 1) % 2 === 0 ? 'c' : 'd'}","descricao":"closed"}`
  },
  { name: 'GET /clientes/:id/extrato', method: 'GET', path: (n) => `/clientes/${(n % 5) + 1}/extrato` }
]

interface Measured {
  requests: number
  perSecond: number
  p50: number
  p99: number
  max: number
  statuses: Record<string, number>
  failures: number
  /** CPU time per request, ms: of the server process and of every PostgreSQL process. */
  serverCpuMs: number
  postgresCpuMs: number
  /** The server's V8 heap allocations per request, KB, and its GC pauses per 1000 requests, ms. */
  allocatedKb: number
  gcMsPerThousand: number
  /** Collections per 1000 requests: scavenges; and mark-compacts in the whole window. */
  scavengesPerThousand: number
  markCompacts: number
}

/** What gc-meter.mjs measured over one window (SIGUSR2 to SIGUSR2). */
interface GcWindow {
  window: number
  allocatedBytes: number
  scavenges: number
  scavengeMs: number
  markCompacts: number
  markCompactMs: number
  otherMs: number
}

/** Closes the server's measuring window and reads what gc-meter.mjs wrote for it (written within the signal's handler). */
async function closeGcWindow({ pid, gcFile }: Server, expected: number): Promise<GcWindow> {
  process.kill(pid, 'SIGUSR2')
  const deadline = performance.now() + 5000
  for (;;) {
    const text = await readFile(gcFile, 'utf8').catch(() => '')
    const read = text ? (JSON.parse(text) as GcWindow) : undefined
    if (read?.window === expected) return read
    if (performance.now() > deadline) throw new Error(`${gcFile}: no figures for window ${expected}`)
    await sleep(20)
  }
}

/** utime + stime of a process, in ms (0 once it is gone). */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) || 0) + (Number(fields[12]) || 0)) * 10
}

/** The postmaster and its children (the backends, the WAL writer, the checkpointer…). */
async function postgresCpuMs(): Promise<number> {
  const postmaster = Number.parseInt(
    await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').catch(() => ''),
    10
  )
  let sum = 0
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(entry) === postmaster || Number(fields[1]) === postmaster)
      sum += ((Number(fields[11]) || 0) + (Number(fields[12]) || 0)) * 10
  }
  return sum
}

/** `connections` loops, back to back, for the warm-up (not counted) and then `seconds`. */
async function load(server: Server, route: Route): Promise<Measured> {
  const { url, pid } = server
  const pool = new Pool(url, { connections, pipelining: 1 })
  const latencies: number[] = []
  const statuses: Record<string, number> = {}
  let failures = 0
  let sequence = 0
  const measureFrom = performance.now() + warmupSeconds * 1000
  const ends = measureFrom + seconds * 1000
  const headers = route.body ? { 'content-type': 'application/json' } : {}
  let cpuAtStart: Promise<[number, number]> | undefined
  const warm = setTimeout(() => {
    process.kill(pid, 'SIGUSR2') // gc-meter.mjs's window opens
    cpuAtStart = Promise.all([cpuMs(pid), postgresCpuMs()])
  }, warmupSeconds * 1000)
  const loop = async () => {
    while (performance.now() < ends) {
      const n = sequence++
      const sent = performance.now()
      try {
        const res = await pool.request({
          method: route.method,
          path: route.path(n),
          body: route.body?.(n),
          headers,
          headersTimeout: 10_000,
          bodyTimeout: 10_000
        })
        await res.body.dump()
        if (sent < measureFrom) continue
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
        latencies.push(performance.now() - sent)
      } catch {
        if (sent >= measureFrom) failures++
      }
    }
  }
  await Promise.all(Array.from({ length: connections }, loop))
  clearTimeout(warm)
  const [serverEnd, postgresEnd] = [await cpuMs(pid), await postgresCpuMs()]
  const gc = await closeGcWindow(server, ++server.gcWindows)
  const [serverStart, postgresStart] = (await cpuAtStart) ?? [serverEnd, postgresEnd]
  await pool.close()
  const perRequest = (key: keyof GcWindow) => gc[key] / Math.max(1, latencies.length)
  const gcMs = (['scavengeMs', 'markCompactMs', 'otherMs'] as const).reduce((sum, key) => sum + perRequest(key), 0)
  latencies.sort((a, b) => a - b)
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN
  return {
    requests: latencies.length,
    perSecond: latencies.length / seconds,
    p50: at(0.5),
    p99: at(0.99),
    max: latencies.at(-1) ?? NaN,
    statuses,
    failures,
    serverCpuMs: (serverEnd - serverStart) / Math.max(1, latencies.length),
    postgresCpuMs: (postgresEnd - postgresStart) / Math.max(1, latencies.length),
    allocatedKb: perRequest('allocatedBytes') / 1024,
    gcMsPerThousand: gcMs * 1000,
    scavengesPerThousand: perRequest('scavenges') * 1000,
    markCompacts: gc.markCompacts
  }
}

const median = (numbers: number[]) => {
  const sorted = [...numbers].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

function pinSelf() {
  const pinned = spawnSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)]).status === 0
  if (!pinned) console.warn('!!! could not pin the load generator to CPU 0')
}

async function main() {
  pinSelf()
  const databaseUrl = await startPostgres()
  const names = values.targets!.split(',')
  const servers: Server[] = []
  for (const name of names) servers.push(await startServer(name, databaseUrl, values['pool-max']))
  const machine = `${os.cpus()[0].model}, ${os.cpus().length} CPUs; servers and PostgreSQL on CPU 1, load on CPU 0`
  console.log(`${machine}\n${connections} connections, ${warmupSeconds} s warm-up + ${seconds} s, ${rounds} rounds\n`)
  const runs: Array<{ round: number; route: string; server: string } & Measured> = []
  if (values['alloc-prof']) await mkdir(values['alloc-prof'], { recursive: true })
  for (let round = 0; round < rounds; round++) {
    for (const route of routes) {
      // The order rotates each round, so no server always runs first (or right after another's load).
      for (let i = 0; i < servers.length; i++) {
        const server = servers[(i + round) % servers.length]
        const measured = await load(server, route)
        runs.push({ round, route: route.name, server: server.name, ...measured })
        const odd = Object.keys(measured.statuses).filter((status) => status !== '200')
        console.log(
          `round ${round + 1} ${route.name.padEnd(30)} ${server.name.padEnd(9)} ${measured.perSecond.toFixed(0).padStart(6)} req/s  p50 ${measured.p50.toFixed(2).padStart(6)}  p99 ${measured.p99.toFixed(2).padStart(7)} ms  cpu/req ${measured.serverCpuMs.toFixed(3)} + pg ${measured.postgresCpuMs.toFixed(3)} ms  ${measured.allocatedKb.toFixed(1)} KB/req  GC ${measured.gcMsPerThousand.toFixed(1)} ms/1k` +
            (odd.length || measured.failures
              ? `  statuses ${JSON.stringify(measured.statuses)} failures ${measured.failures}`
              : '')
        )
      }
    }
  }

  if (values['alloc-prof']) {
    console.log(`\nallocation profiles in ${values['alloc-prof']}: npx tsx bench/profile.ts FILE`)
  }

  const summary = routes.map((route) => {
    const of = (name: string) => runs.filter((run) => run.route === route.name && run.server === name)
    const byServer = Object.fromEntries(
      names.map((name) => [
        name,
        {
          perSecond: median(of(name).map((run) => run.perSecond)),
          p50: median(of(name).map((run) => run.p50)),
          p99: median(of(name).map((run) => run.p99)),
          serverCpuMs: median(of(name).map((run) => run.serverCpuMs)),
          postgresCpuMs: median(of(name).map((run) => run.postgresCpuMs)),
          allocatedKb: median(of(name).map((run) => run.allocatedKb)),
          gcMsPerThousand: median(of(name).map((run) => run.gcMsPerThousand)),
          scavengesPerThousand: median(of(name).map((run) => run.scavengesPerThousand))
        }
      ])
    )
    // Each Tandem's ratio to each baseline per round (same minutes), then the median of those.
    const ratio = (name: string, other: string, key: 'perSecond' | 'p50' | 'p99') =>
      median(of(name).map((run, i) => run[key] / of(other)[i][key]))
    const ratios = names
      .filter((name) => name.startsWith('tandem'))
      .flatMap((name) =>
        ['baseline', 'unlogged', 'fastify']
          .filter((other) => names.includes(other))
          .map((other) => ({
            of: `${name}/${other}`,
            perSecond: ratio(name, other, 'perSecond'),
            p50: ratio(name, other, 'p50'),
            p99: ratio(name, other, 'p99')
          }))
      )
    return { route: route.name, servers: byServer, ratios }
  })
  console.log('\nmedians over the rounds; ratios per round, then their median')
  const width = Math.max(...names.map((name) => name.length))
  for (const row of summary) {
    console.log(`\n${row.route}`)
    for (const name of names) {
      const { perSecond, p50, p99, serverCpuMs, postgresCpuMs, allocatedKb, gcMsPerThousand, scavengesPerThousand } =
        row.servers[name]
      console.log(
        `  ${name.padEnd(width)} ${perSecond.toFixed(0).padStart(6)} req/s  p50 ${p50.toFixed(2)} ms  p99 ${p99.toFixed(2)} ms  CPU per request: server ${serverCpuMs.toFixed(3)} ms, PostgreSQL ${postgresCpuMs.toFixed(3)} ms\n` +
          `  ${' '.repeat(width)} per request ${allocatedKb.toFixed(1)} KB allocated; per 1000 requests ${scavengesPerThousand.toFixed(1)} scavenges, ${gcMsPerThousand.toFixed(1)} ms of GC`
      )
    }
    for (const r of row.ratios) {
      console.log(`  ${r.of}: req/s ${r.perSecond.toFixed(2)}  p50 ${r.p50.toFixed(2)}  p99 ${r.p99.toFixed(2)}`)
    }
  }

  const date = new Date().toISOString().replaceAll(':', '-').slice(0, 19)
  const file = path.join(root, 'bench', 'results', `${date}-closed.json`)
  await mkdir(path.dirname(file), { recursive: true })
  await writeFile(
    file,
    JSON.stringify({ date: new Date().toISOString(), machine, options: values, summary, runs }, null, 2)
  )
  console.log(`\nwritten ${path.relative(root, file)}`)
}

try {
  await main()
} catch (error) {
  console.error(error)
  process.exitCode = 1
} finally {
  await cleanUp()
}
