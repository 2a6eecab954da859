/**
 * Rinha de Backend 2024/Q1 against a server side this bench starts: `npm run bench -- [options]`.
 * The load and its checks are `tandem loadtest rinha` (src/loadtest); this adds the topology, CPU
 * pinning and the server's memory and CPU. The options are `usage` below (`--help` prints them).
 */
import { spawnSync } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { buildIfStale } from '../test/helpers/build.js'
import { findMax, runScenario, type Progress } from '../src/loadtest/engine.js'
import { renderHtml } from '../src/loadtest/html.js'
import { figuresOf, summaryText, type Figures } from '../src/loadtest/report.js'
import type { Scenario } from '../src/loadtest/scenario.js'
import { scenarios } from '../src/loadtest/scenarios/index.js'
import { scaleStreams } from '../src/loadtest/schedule.js'
import { grow, scaledGrowth, type Grown } from './grow.js'
import { sampleProcesses, serverText, summarizeServer, type ServerSummary } from './processes.js'
import { apiNames, nginxBinary, pin, projectRoot, ServerSide, type ApiName, type TopologyName } from './topology.js'

const timeoutMs = 5000
/** A --find-max step at --duration-scale 1, as `tandem loadtest --find-max` makes them. */
const findMaxStepS = 30
const progressEveryS = 10
/** Quiet time between growing a database (tandem+grown) and loading it. */
const settleAfterGrowthS = 30
/** A signal this soon after the first is the same Ctrl-C delivered twice. */
const repeatedSignalMs = 1000

const usage = `usage: npm run bench -- [options]      (npx tsx bench/rinha.ts [options])

Starts a server side (nginx + 2 replicas + PostgreSQL, pinned to CPU 1), loads it with a
\`tandem loadtest\` scenario from CPU 0, and reports latency, errors, memory and CPU. dist/ is built
first when it is older than src/ or web/.

  --scenario NAME     another \`tandem loadtest\` scenario on the same topology (increments, attendance,
                      counter), with --servers tandem and/or tandem+grown (default rinha)
  --rate N            multiplies every arrival rate (1: debits 1→220/s, credits 1→110/s, statements 1→10/s)
  --duration-scale N  multiplies the 2-minute ramp and the 2-minute plateau (0.1: a 24 s smoke run)
  --topology NAME     nginx (default): nginx + 2 \`serve\` replicas + embedded PostgreSQL; cluster: \`start\` with 2 workers
  --servers LIST      behind nginx, one run after another on a fresh database each, compared at the end:
                      tandem (default), baseline (bench/baseline/server.mjs, node:http + postgres.js on the
                      same durable tables), unlogged (the same on UNLOGGED tables), fastify (the same routes
                      on bare Fastify, bench/baseline/fastify.mjs); e.g. tandem,baseline,unlogged;
                      tandem+grown: Tandem on a grown database (bench/grow.ts: 10 M transactions, 1 M
                      increment keys, 100 k sheets stored before the load)
  --growth F          scales the grown database's volumes (default 1; 0.01 for a quick look)
  --find-max          instead of the test's load: constant-rate steps ×1, ×1.5, ×2, ×3 … of its final rates
                      (30 s × --duration-scale each) until p99 passes --sla-ms or a check fails
  --sla-ms N          the latency bound: --find-max's p99 and the comparison's "under" column (default 250)
  --target URL        load a server that is already running instead (no validation phase: its balances are not fresh)
  --seed N            seed of the load's random choices
  --pool-max N        DATABASE_POOL_MAX of each API process (default 4, as deploy/compose.rinha.yaml)
  --server-env K=V,…  extra environment for every API process (e.g. OVERLOAD_MAX_IN_FLIGHT=64)
  --rounds N          runs the --servers list N times, its order rotated each round, and compares each
                      server's medians (default 1): single runs of one server differ by up to 1.5× at p99
  --access-log        keeps nginx's access log of each run as bench/results/<…>.access.jsonl: one JSON
                      line per request with its replica, status, request_time and upstream_time
  -h, --help          this text

Writes bench/results/<time>-<scenario>-<server>.json and .html. Ctrl-C stops the load, prints what it
measured and tears every process and directory down; a second Ctrl-C kills them. Exit 1 when a check
failed or a server process died, 2 when the options are wrong.
`

/** Wrong options: said in one line with exit 2, not as a stack trace. */
class UsageError extends Error {}

/** One server of --servers: an API, on a fresh or a grown database. */
interface Server {
  api: ApiName
  grown: boolean
  name: string
}

interface Options {
  scenario: Scenario
  rate: number
  durationScale: number
  topology: TopologyName
  servers: Server[]
  growth: number
  findMax: boolean
  slaMs: number
  target: string | undefined
  seed: number
  poolMax: number
  serverEnv: Record<string, string>
  rounds: number
  accessLog: boolean
}

/**
 * The per-address limits a scenario's load would trip, raised on the servers the bench starts: all of
 * its users come from the one address of the load generator (40 teachers register and 2,000 students
 * sign in within a minute, against 10 and 600 a minute per address by default). --server-env wins.
 */
const scenarioEnv: Record<string, Record<string, string>> = {
  attendance: { REGISTRATION_LIMIT_PER_MINUTE: '1000', ATTENDANCE_SIGNIN_LIMIT_PER_MINUTE: '1000000' }
}

function parseOptions(): Options | 'help' {
  const { values } = parseArgsOr({
    options: {
      help: { type: 'boolean', short: 'h', default: false },
      rate: { type: 'string', default: '1' },
      'duration-scale': { type: 'string', default: '1' },
      topology: { type: 'string', default: 'nginx' },
      scenario: { type: 'string', default: 'rinha' },
      servers: { type: 'string', default: 'tandem' },
      growth: { type: 'string', default: '1' },
      'find-max': { type: 'boolean', default: false },
      'sla-ms': { type: 'string', default: '250' },
      target: { type: 'string' },
      seed: { type: 'string', default: '1' },
      'pool-max': { type: 'string', default: '4' },
      'server-env': { type: 'string', default: '' },
      rounds: { type: 'string', default: '1' },
      'access-log': { type: 'boolean', default: false }
    }
  })
  if (values.help) return 'help'
  if (values.topology !== 'nginx' && values.topology !== 'cluster')
    throw new UsageError(`--topology must be nginx or cluster, not ${values.topology}`)
  const servers = values.servers
    .split(',')
    .filter(Boolean)
    .map((name): Server => ({ api: name.replace(/\+grown$/, '') as ApiName, grown: name === 'tandem+grown', name }))
  const unknown = servers.find((s) => !apiNames.includes(s.api) || (s.name !== s.api && !s.grown))
  if (unknown || servers.length === 0)
    throw new UsageError(`--servers takes a list of ${apiNames.join(', ')}, tandem+grown, not ${values.servers}`)
  if (values.topology === 'cluster' && servers.some((s) => s.api !== 'tandem'))
    throw new UsageError('--servers other than tandem run behind nginx: drop --topology cluster')
  const scenario = scenarios[values.scenario]
  if (!scenario)
    throw new UsageError(`--scenario takes one of ${Object.keys(scenarios).join(', ')}, not ${values.scenario}`)
  if (scenario.name !== 'rinha' && servers.some((s) => s.api !== 'tandem'))
    throw new UsageError(
      `the baselines serve the Rinha routes only: --scenario ${scenario.name} takes tandem, tandem+grown`
    )
  if (values.target && (servers.length > 1 || servers[0].grown))
    throw new UsageError('--target loads one server that is already running: drop --servers')
  return {
    scenario,
    rate: positive('--rate', values.rate),
    durationScale: positive('--duration-scale', values['duration-scale']),
    topology: values.topology,
    servers,
    growth: positive('--growth', values.growth),
    findMax: values['find-max'],
    slaMs: positive('--sla-ms', values['sla-ms']),
    target: values.target?.replace(/\/$/, ''),
    seed: Math.round(positive('--seed', values.seed)),
    poolMax: Math.round(positive('--pool-max', values['pool-max'])),
    rounds: wholeNumber('--rounds', values.rounds),
    accessLog: values['access-log'],
    serverEnv: {
      ...scenarioEnv[scenario.name],
      ...Object.fromEntries(
        values['server-env']
          .split(',')
          .filter(Boolean)
          .map((pair) => {
            const [name, ...value] = pair.split('=')
            if (!/^[A-Z_][A-Z0-9_]*$/.test(name) || value.length === 0)
              throw new UsageError(`--server-env takes NAME=value pairs, not ${pair}`)
            return [name, value.join('=')]
          })
      )
    }
  }
}

/** parseArgs, its complaints (an unknown option, a missing value) as UsageErrors. */
function parseArgsOr<T extends ParseArgsConfig>(config: T) {
  try {
    return parseArgs(config)
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
}

function positive(flag: string, text: string): number {
  const value = Number(text)
  if (!(value > 0) || !Number.isFinite(value)) throw new UsageError(`${flag} must be a positive number, not ${text}`)
  return value
}

function wholeNumber(flag: string, text: string): number {
  const value = positive(flag, text)
  if (!Number.isInteger(value)) throw new UsageError(`${flag} must be a whole number, not ${text}`)
  return value
}

function chooseTopology(wanted: TopologyName): TopologyName {
  if (wanted !== 'nginx' || nginxBinary) return wanted
  console.warn(
    `\n${'!'.repeat(78)}\n!!! nginx is not installed: run \`apt-get install -y nginx\`.\n` +
      `!!! Falling back to the cluster topology: these figures are NOT the nginx ones.\n${'!'.repeat(78)}\n`
  )
  return 'cluster'
}

async function startServers(servers: ServerSide, topology: TopologyName, api: ApiName) {
  console.log(`starting the ${topology} topology (${api})...`)
  if (topology === 'nginx') await servers.startNginx(api)
  else await servers.startCluster()
  console.log(`${servers.description} at ${servers.url}`)
}

/** Which server code was measured: the commit, marked dirty when the working tree differs. */
function describeCode(): string {
  const git = spawnSync('git', ['-C', projectRoot, 'describe', '--always', '--dirty'], { encoding: 'utf8' })
  return git.status === 0 ? git.stdout.trim() : 'unknown (not a git checkout)'
}

function reportProgress(p: Progress) {
  if (Math.floor(p.elapsedMs / 1000) % progressEveryS !== 0) return
  console.log(
    `  ${p.loadElapsedMs === undefined ? 'validation' : `${(p.loadElapsedMs / 1000).toFixed(0).padStart(4)} s`}  ${p.perS} req/s  p99 ${p.p99Ms.toFixed(1)} ms  errors ${p.errors}  in flight ${p.inFlight}`
  )
}

interface BenchReport {
  machine: { cpu: string; cores: number; node: string; memoryMb: number }
  code: string
  topology: { name: string; description: string; pinning: string }
  server: ServerSummary | undefined
  /** The database grown before the load (tandem+grown). */
  grown: (Grown & { rows: ReturnType<typeof scaledGrowth> }) | undefined
  warnings: string[]
  loadtest: Figures
}

/** The run's JSON and HTML reports, and nginx's access log when kept; answers the files' paths. */
async function writeResults(report: BenchReport, name: string, accessLog: string | undefined): Promise<string[]> {
  const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results')
  await mkdir(dir, { recursive: true })
  const base = path.join(
    dir,
    `${report.loadtest.startedAt.replace(/[:.]/g, '-')}-${report.loadtest.scenario}-${name.replace('+', '-')}`
  )
  const files: Array<[path: string, text: string]> = [
    [`${base}.json`, `${JSON.stringify(report, null, 2)}\n`],
    [`${base}.html`, await renderHtml(report.loadtest)]
  ]
  if (accessLog !== undefined) files.push([`${base}.access.jsonl`, accessLog])
  for (const [file, text] of files) await writeFile(file, text)
  return files.map(([file]) => path.relative(process.cwd(), file))
}

function printReport(report: BenchReport, files: string[]) {
  console.log(summaryText(report.loadtest))
  const m = report.machine
  console.log(`\nmachine       ${m.cpu}, ${m.cores} cores, ${m.memoryMb} MB, node ${m.node}`)
  console.log(`code          ${report.code}`)
  console.log(`topology      ${report.topology.name}: ${report.topology.description}`)
  console.log(`pinning       ${report.topology.pinning}`)
  if (report.grown)
    console.log(
      `grown         ${Object.entries(report.grown.rows)
        .map(([what, n]) => `${n.toLocaleString('en')} ${what}`)
        .join(', ')} in ${report.grown.seconds} s; MB: ${JSON.stringify(report.grown.sizesMb)}`
    )
  if (report.server) for (const line of serverText(report.server)) console.log(line)
  else console.log('server        RSS and CPU not measured (--target: the server processes are not ours)')
  for (const warning of report.warnings) console.log(`  !!! ${warning}`)
  console.log(`results       ${files.join(', ')}`)
}

interface Run {
  server: Server
  report: BenchReport
}

/** One run of the scenario against `server` on a topology of its own (or the --target), reported and torn down. */
async function runOnce(
  options: Options,
  server: Server,
  pinning: ReturnType<typeof pin>,
  signal: AbortSignal,
  life: Life
) {
  const startedAt = new Date()
  const topology = options.target ? undefined : chooseTopology(options.topology)
  const servers = topology && new ServerSide(pinning.serverCpus, options.poolMax, options.serverEnv)
  life.servers = servers
  try {
    if (servers && topology) await startServers(servers, topology, server.api)
    let grown: BenchReport['grown']
    if (servers && server.grown) {
      const rows = scaledGrowth(options.growth)
      console.log(`growing the database: ${JSON.stringify(rows)}`)
      grown = { rows, ...(await grow(servers.databaseUrl, rows, (line) => console.log(line))) }
    }
    // The disk as quiet for every server: a grown database leaves gigabytes of dirty pages that the
    // kernel would otherwise write back during the load, slowing every commit's WAL flush.
    if (servers) spawnSync('sync')
    if (grown) {
      // A database that grew over months has not just written 2 GB: the storage under this virtual
      // machine goes on absorbing it after sync (measured: nginx and the driver, whose work does not
      // depend on the data, used 25-45 % more CPU when the load began at once).
      console.log(`  settling for ${settleAfterGrowthS} s`)
      await sleep(settleAfterGrowthS * 1000, undefined, { signal }).catch(() => {})
    }
    if (signal.aborted) return undefined
    const url = options.target ?? servers!.url
    const sampler = servers && sampleProcesses(() => servers.pids())
    console.log(
      `load: ${options.scenario.name}${options.findMax ? ' --find-max' : ''}, rate ×${options.rate}, time ×${options.durationScale} against ${url}`
    )
    const common = {
      target: url,
      streams: scaleStreams(options.scenario.streams, { rate: options.rate, time: options.durationScale }),
      seed: options.seed,
      timeoutMs,
      signal,
      onProgress: reportProgress
    }
    const { result, findMax: steps } = options.findMax
      ? await findMax(options.scenario, {
          ...common,
          slaMs: options.slaMs,
          stepS: Math.max(3, Math.round(findMaxStepS * options.durationScale))
        })
      : {
          // The validation phase expects the seeded balances of a fresh database.
          result: await runScenario(options.scenario, { ...common, validate: !options.target }),
          findMax: undefined
        }
    const casualties = servers?.casualties() ?? []
    const report: BenchReport = {
      machine: {
        cpu: os.cpus()[0]?.model ?? 'unknown',
        cores: os.cpus().length,
        node: process.version,
        memoryMb: Math.round(os.totalmem() / 2 ** 20)
      },
      code: describeCode(),
      topology: {
        name: topology ?? `target ${url}`,
        description: servers?.description ?? 'already running (not started by the bench)',
        pinning: pinning.description
      },
      server: sampler && summarizeServer(sampler.stop()),
      grown,
      warnings: [...(servers?.notes ?? []), ...casualties, ...(servers?.nginxErrors() ?? [])],
      loadtest: figuresOf(
        result,
        {
          scenario: options.scenario.name,
          target: url,
          startedAt,
          checks: options.scenario.checks,
          options: {
            server: server.name,
            rateScale: options.rate,
            timeScale: options.durationScale,
            seed: options.seed,
            timeoutMs,
            poolMax: options.poolMax,
            serverEnv: options.serverEnv,
            ...(options.findMax && { findMax: true, slaMs: options.slaMs }),
            ...(grown && { growth: grown.rows })
          }
        },
        steps
      )
    }
    // Read before the teardown removes nginx's directory; none when the bench started no nginx.
    const accessLog = options.accessLog ? await servers?.nginxAccessLog() : undefined
    printReport(report, await writeResults(report, server.name, accessLog))
    if (!report.loadtest.passed || casualties.length > 0) process.exitCode = result.interrupted ? 130 : 1
    return { server, report }
  } finally {
    console.log('tearing down...')
    await servers?.stop()
    life.servers = undefined
  }
}

/** The share of answers within `slaMs`, from the run's histogram (buckets 1 % wide). */
function shareUnder(figures: Figures, slaMs: number): number {
  const total = figures.histogram.reduce((n, bucket) => n + bucket.count, 0)
  const under = figures.histogram.filter((bucket) => bucket.upToMs <= slaMs).reduce((n, b) => n + b.count, 0)
  return total === 0 ? Number.NaN : (100 * under) / total
}

/**
 * The runs side by side, each figure also as a ratio to the references that ran: the durable
 * baseline, the UNLOGGED one, and Tandem on a fresh database (for tandem+grown). A server that ran
 * more than once (--rounds, or named twice in --servers) gets one line per run, then one line of
 * medians; the ratios are between those medians.
 */
function printComparison(runs: Run[], options: Options) {
  const figures = (run: Run) => {
    const { requests, latencyMs, groups, findMax } = run.report.loadtest
    return {
      requests: requests.total,
      ko: requests.ko,
      under: Math.round(shareUnder(run.report.loadtest, options.slaMs) * 100) / 100,
      p50: latencyMs.p50,
      p99: latencyMs.p99,
      max: latencyMs.max,
      rss: run.report.server?.peakTotalRssMb ?? Number.NaN,
      ...Object.fromEntries(Object.entries(groups).map(([group, g]) => [`p99 ${group.slice(0, 10)}`, g.latencyMs.p99])),
      ...(findMax && { 'max held/s': findMax.maxHeldPerS })
    } as Record<string, number>
  }
  const keys = Object.keys(figures(runs[0]))
  const ratioKeys = keys.filter((key) => !['requests', 'ko', 'under'].includes(key))
  const names = [...new Set(runs.map((run) => run.server.name))]
  const rows = names.map((name) => {
    const own = runs.filter((run) => run.server.name === name).map(figures)
    return { name, runs: own, figures: Object.fromEntries(keys.map((k) => [k, median(own.map((f) => f[k]))])) }
  })
  const references = ['baseline', 'unlogged', 'tandem']
    .map((name) => rows.find((row) => row.name === name))
    .filter((row) => row !== undefined)
  const repeated = runs.length > names.length
  console.log(
    `\ncomparison (same run, same harness; "under": % of answers within ${options.slaMs} ms)` +
      (repeated
        ? `\nmedians over ${options.rounds > 1 ? `${options.rounds} rounds` : 'the runs of each server'}`
        : '') +
      (references.length ? `\nratios: this / ${references.map((r) => r.name).join(', this / ')}` : '')
  )
  const width = 14
  const line = (label: string, cells: string[]) => console.log(`  ${label.padEnd(14)}${cells.join('')}`)
  const values = (f: Record<string, number>) => keys.map((k) => String(f[k]).padStart(width))
  line(
    'server',
    keys.map((k) => k.padStart(width))
  )
  if (repeated) for (const row of rows) row.runs.forEach((f, i) => line(`${row.name} #${i + 1}`, values(f)))
  for (const row of rows) {
    line(row.name, values(row.figures))
    for (const reference of references.filter((r) => r !== row)) {
      const to = reference.figures
      const cells = keys.map((k) =>
        (ratioKeys.includes(k) ? `${(row.figures[k] / to[k]).toFixed(2)}×` : '').padStart(width)
      )
      line(`  / ${reference.name}`, cells)
    }
  }
}

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const middle = Math.floor(sorted.length / 2)
  const value = sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
  return Math.round(value * 100) / 100
}

interface Life {
  servers: ServerSide | undefined
}

async function main() {
  const options = parseOptions()
  if (options === 'help') return void process.stdout.write(usage)
  buildIfStale('bench')
  const pinning = pin()
  const life: Life = { servers: undefined }
  const abort = new AbortController()
  // First signal: stop the load, report, tear down. Another one a second later: kill everything
  // now and leave. (A Ctrl-C arrives twice at once under tsx: from the terminal and relayed by tsx.)
  let interruptedAt = 0
  const interrupt = (signal: NodeJS.Signals) => {
    if (!abort.signal.aborted) {
      interruptedAt = Date.now()
      console.error(
        `\n${signal}: stopping the load; the servers are torn down after the report (again to kill them now)`
      )
      return abort.abort()
    }
    if (Date.now() - interruptedAt < repeatedSignalMs) return
    life.servers?.killNow()
    process.exit(130)
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, interrupt)
  // Whatever way this process ends, nothing it started outlives it.
  process.on('exit', () => life.servers?.killNow())
  const runs: Run[] = []
  for (let round = 0; round < options.rounds && !abort.signal.aborted; round++) {
    // Each server takes each place in turn: a machine that drifts over the rounds favours none of them.
    const order = options.servers.map((_, i) => options.servers[(i + round) % options.servers.length])
    if (options.rounds > 1)
      console.log(`round ${round + 1} of ${options.rounds}: ${order.map((s) => s.name).join(', ')}`)
    for (const server of order) {
      if (abort.signal.aborted) break
      const run = await runOnce(options, server, pinning, abort.signal, life)
      if (run) runs.push(run)
    }
  }
  if (runs.length > 1) printComparison(runs, options)
}

main().catch((error: unknown) => {
  if (error instanceof UsageError) {
    console.error(`bench: ${error.message} (npm run bench -- --help lists the options)`)
    process.exitCode = 2
    return
  }
  console.error(error instanceof Error ? error.stack : error)
  process.exitCode = 1
})
