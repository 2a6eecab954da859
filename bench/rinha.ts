/**
 * Rinha de Backend 2024/Q1 against a server side this bench starts: `npm run bench -- [options]`.
 * The load and its checks are `tandem loadtest rinha` (src/loadtest); this adds the topology, CPU
 * pinning and the server's memory and CPU.
 *
 *   --rate N            multiplies every arrival rate (1: debits 1→220/s, credits 1→110/s, statements 1→10/s)
 *   --duration-scale N  multiplies the 2-minute ramp and the 2-minute plateau (0.1: a 24 s smoke run)
 *   --topology NAME     nginx (default): nginx + 2 `serve` replicas + embedded PostgreSQL; cluster: `start` with 2 workers
 *   --servers LIST      behind nginx, one run after another on a fresh database each, compared at the end:
 *                       tandem (default), baseline (bench/baseline/server.mjs, node:http + postgres.js on the
 *                       same durable tables), unlogged (the same on UNLOGGED tables); e.g. tandem,baseline,unlogged
 *   --target URL        load a server that is already running instead (no validation phase: its balances are not fresh)
 *   --seed N            seed of the load's random choices
 *   --pool-max N        DATABASE_POOL_MAX of each API process (default 4, as deploy/compose.rinha.yaml)
 *   --server-env K=V,…  extra environment for every API process (e.g. OVERLOAD_MAX_IN_FLIGHT=64)
 *
 * The driver runs on CPU 0 and the servers on CPU 1 when taskset is there. Ctrl-C stops the load,
 * prints what it measured and tears every process and directory down; a second Ctrl-C kills them.
 */
import { spawnSync } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { runScenario, type Progress } from '../src/loadtest/engine.js'
import { renderHtml } from '../src/loadtest/html.js'
import { figuresOf, summaryText, type Figures } from '../src/loadtest/report.js'
import { rinha } from '../src/loadtest/scenarios/rinha.js'
import { scaleStreams } from '../src/loadtest/schedule.js'
import { sampleProcesses, serverText, summarizeServer, type ServerSummary } from './processes.js'
import { apiNames, nginxBinary, pin, projectRoot, ServerSide, type ApiName, type TopologyName } from './topology.js'

const timeoutMs = 5000
const progressEveryS = 10
/** A signal this soon after the first is the same Ctrl-C delivered twice. */
const repeatedSignalMs = 1000

interface Options {
  rate: number
  durationScale: number
  topology: TopologyName
  servers: ApiName[]
  target: string | undefined
  seed: number
  poolMax: number
  serverEnv: Record<string, string>
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      rate: { type: 'string', default: '1' },
      'duration-scale': { type: 'string', default: '1' },
      topology: { type: 'string', default: 'nginx' },
      servers: { type: 'string', default: 'tandem' },
      target: { type: 'string' },
      seed: { type: 'string', default: '1' },
      'pool-max': { type: 'string', default: '4' },
      'server-env': { type: 'string', default: '' }
    }
  })
  if (values.topology !== 'nginx' && values.topology !== 'cluster')
    throw new Error(`--topology must be nginx or cluster, not ${values.topology}`)
  const servers = values.servers.split(',').filter(Boolean)
  const unknown = servers.find((name) => !apiNames.includes(name as ApiName))
  if (unknown || servers.length === 0)
    throw new Error(`--servers takes a list of ${apiNames.join(', ')}, not ${values.servers}`)
  if (values.topology === 'cluster' && servers.some((name) => name !== 'tandem'))
    throw new Error('--servers other than tandem run behind nginx: drop --topology cluster')
  return {
    rate: positive('--rate', values.rate),
    durationScale: positive('--duration-scale', values['duration-scale']),
    topology: values.topology,
    servers: servers as ApiName[],
    target: values.target?.replace(/\/$/, ''),
    seed: Math.round(positive('--seed', values.seed)),
    poolMax: Math.round(positive('--pool-max', values['pool-max'])),
    serverEnv: Object.fromEntries(
      values['server-env']
        .split(',')
        .filter(Boolean)
        .map((pair) => {
          const [name, ...value] = pair.split('=')
          if (!/^[A-Z_][A-Z0-9_]*$/.test(name) || value.length === 0)
            throw new Error(`--server-env takes NAME=value pairs, not ${pair}`)
          return [name, value.join('=')]
        })
    )
  }
}

function positive(flag: string, text: string): number {
  const value = Number(text)
  if (!(value > 0) || !Number.isFinite(value)) throw new Error(`${flag} must be a positive number, not ${text}`)
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
  warnings: string[]
  loadtest: Figures
}

async function writeResults(report: BenchReport, api: ApiName): Promise<string> {
  const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results')
  await mkdir(dir, { recursive: true })
  const base = path.join(dir, `${report.loadtest.startedAt.replace(/[:.]/g, '-')}-rinha-${api}`)
  await writeFile(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`)
  await writeFile(`${base}.html`, await renderHtml(report.loadtest))
  return path.relative(process.cwd(), base)
}

function printReport(report: BenchReport, files: string) {
  console.log(summaryText(report.loadtest))
  const m = report.machine
  console.log(`\nmachine       ${m.cpu}, ${m.cores} cores, ${m.memoryMb} MB, node ${m.node}`)
  console.log(`code          ${report.code}`)
  console.log(`topology      ${report.topology.name}: ${report.topology.description}`)
  console.log(`pinning       ${report.topology.pinning}`)
  if (report.server) for (const line of serverText(report.server)) console.log(line)
  else console.log('server        RSS and CPU not measured (--target: the server processes are not ours)')
  for (const warning of report.warnings) console.log(`  !!! ${warning}`)
  console.log(`results       ${files}.json, ${files}.html`)
}

interface Run {
  api: ApiName
  report: BenchReport
}

/** One rinha run against `api` on a topology of its own (or the --target), reported and torn down. */
async function runOnce(
  options: Options,
  api: ApiName,
  pinning: ReturnType<typeof pin>,
  signal: AbortSignal,
  life: Life
) {
  const startedAt = new Date()
  const topology = options.target ? undefined : chooseTopology(options.topology)
  const servers = topology && new ServerSide(pinning.serverCpus, options.poolMax, options.serverEnv)
  life.servers = servers
  try {
    if (servers && topology) await startServers(servers, topology, api)
    if (signal.aborted) return undefined
    const url = options.target ?? servers!.url
    const sampler = servers && sampleProcesses(() => servers.pids())
    console.log(`load: rinha, rate ×${options.rate}, time ×${options.durationScale} against ${url}`)
    const result = await runScenario(rinha, {
      target: url,
      streams: scaleStreams(rinha.streams, { rate: options.rate, time: options.durationScale }),
      seed: options.seed,
      timeoutMs,
      // The validation phase expects the seeded balances of a fresh database.
      validate: !options.target,
      signal,
      onProgress: reportProgress
    })
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
      warnings: [...(servers?.notes ?? []), ...casualties, ...(servers?.nginxErrors() ?? [])],
      loadtest: figuresOf(result, {
        scenario: rinha.name,
        target: url,
        startedAt,
        checks: rinha.checks,
        options: {
          server: api,
          rateScale: options.rate,
          timeScale: options.durationScale,
          seed: options.seed,
          timeoutMs,
          poolMax: options.poolMax,
          serverEnv: options.serverEnv
        }
      })
    }
    printReport(report, await writeResults(report, api))
    if (!report.loadtest.passed || casualties.length > 0) process.exitCode = result.interrupted ? 130 : 1
    return { api, report }
  } finally {
    console.log('tearing down...')
    await servers?.stop()
    life.servers = undefined
  }
}

/** The runs side by side, each figure also as a ratio to the durable baseline's (and the UNLOGGED one's). */
function printComparison(runs: Run[]) {
  const baseline = runs.find((run) => run.api === 'baseline')
  const unlogged = runs.find((run) => run.api === 'unlogged')
  const figures = (run: Run) => {
    const { requests, latencyMs } = run.report.loadtest
    return {
      requests: requests.total,
      ko: requests.ko,
      p50: latencyMs.p50,
      p99: latencyMs.p99,
      max: latencyMs.max,
      rss: run.report.server?.peakTotalRssMb ?? Number.NaN
    }
  }
  const ratio = (value: number, to: Run | undefined, key: 'p50' | 'p99' | 'max' | 'rss') =>
    to ? `${(value / figures(to)[key]).toFixed(2)}×` : '-'
  console.log('\ncomparison (same run, same harness; ratios: to baseline / to unlogged)')
  console.log(
    `  ${'server'.padEnd(10)}${['requests', 'KO', 'p50 ms', 'p99 ms', 'max ms', 'RSS MB'].map((h) => h.padStart(10)).join('')}    p50, p99, max, RSS ratios`
  )
  for (const run of runs) {
    const f = figures(run)
    const ratios = (['p50', 'p99', 'max', 'rss'] as const)
      .map((key) => `${ratio(f[key], baseline, key)}/${ratio(f[key], unlogged, key)}`)
      .join('  ')
    console.log(
      `  ${run.api.padEnd(10)}${[f.requests, f.ko, f.p50, f.p99, f.max, f.rss].map((v) => String(v).padStart(10)).join('')}    ${ratios}`
    )
  }
}

interface Life {
  servers: ServerSide | undefined
}

async function main() {
  const options = parseOptions()
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
  for (const api of options.target ? (['tandem'] as const) : options.servers) {
    if (abort.signal.aborted) break
    const run = await runOnce(options, api, pinning, abort.signal, life)
    if (run) runs.push(run)
  }
  if (runs.length > 1) printComparison(runs)
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error)
  process.exitCode = 1
})
