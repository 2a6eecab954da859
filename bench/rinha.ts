/**
 * Rinha de Backend 2024/Q1 load, open model: `npm run bench -- [options]`.
 *
 *   --rate N            multiplies every arrival rate (1: debits 1→220/s, credits 1→110/s, statements 1→10/s)
 *   --duration-scale N  multiplies the 2-minute ramp and the 2-minute plateau (0.1: a 24 s smoke run)
 *   --topology NAME     nginx (default): nginx + 2 `serve` replicas + embedded PostgreSQL; cluster: `start` with 2 workers
 *   --target URL        load a server that is already running instead (fresh database for the final balance check)
 *   --connections N     most connections the driver opens (default 2048)
 *   --pool-max N        DATABASE_POOL_MAX of each API process (default 10)
 *   --server-env K=V,…  extra environment for every API process (e.g. OVERLOAD_MAX_IN_FLIGHT=64)
 *
 * The driver runs on CPU 0 and the servers on CPU 1 when taskset is there.
 */
import { spawnSync } from 'node:child_process'
import { parseArgs } from 'node:util'
import { runLoad, profiles, type Progress } from './load.js'
import { sampleProcesses } from './processes.js'
import { printSummary, summarize, writeSummary } from './report.js'
import { nginxBinary, pin, projectRoot, ServerSide, type TopologyName } from './topology.js'

const timeoutMs = 5000

interface Options {
  rate: number
  durationScale: number
  topology: TopologyName
  target: string | undefined
  connections: number
  poolMax: number
  serverEnv: Record<string, string>
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      rate: { type: 'string', default: '1' },
      'duration-scale': { type: 'string', default: '1' },
      topology: { type: 'string', default: 'nginx' },
      target: { type: 'string' },
      connections: { type: 'string', default: '2048' },
      'pool-max': { type: 'string', default: '10' },
      'server-env': { type: 'string', default: '' }
    }
  })
  if (values.topology !== 'nginx' && values.topology !== 'cluster')
    throw new Error(`--topology must be nginx or cluster, not ${values.topology}`)
  return {
    rate: positive('--rate', values.rate),
    durationScale: positive('--duration-scale', values['duration-scale']),
    topology: values.topology,
    target: values.target?.replace(/\/$/, ''),
    connections: Math.round(positive('--connections', values.connections)),
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

async function startServers(servers: ServerSide, topology: TopologyName) {
  console.log(`starting the ${topology} topology...`)
  if (topology === 'nginx') await servers.startNginx()
  else await servers.startCluster()
  console.log(`${servers.description} at ${servers.url}`)
}

/** Which server code was measured: the commit, marked dirty when the working tree differs. */
function describeCode(): string {
  const git = spawnSync('git', ['-C', projectRoot, 'describe', '--always', '--dirty'], { encoding: 'utf8' })
  return git.status === 0 ? git.stdout.trim() : 'unknown (not a git checkout)'
}

function reportProgress(p: Progress) {
  console.log(
    `  ${p.elapsedS.toFixed(0).padStart(4)} s  sent ${p.sent}  completed ${p.completed}  in flight ${p.inFlight}  errors ${p.errors}`
  )
}

async function main() {
  const options = parseOptions()
  const startedAt = new Date()
  const pinning = pin()
  const topology = options.target ? undefined : chooseTopology(options.topology)
  const servers = topology && new ServerSide(pinning.serverCpus, options.poolMax, options.serverEnv)
  const abort = new AbortController()
  const abandon = (reason: unknown, exitCode: number) => {
    console.error(
      `\n${reason instanceof Error ? reason.stack : String(reason)}\nstopping the load and tearing the servers down...`
    )
    abort.abort()
    void (servers?.stop() ?? Promise.resolve()).finally(() => process.exit(exitCode))
  }
  process.once('SIGINT', (signal) => abandon(signal, 130))
  process.once('SIGTERM', (signal) => abandon(signal, 143))
  process.once('uncaughtException', (error) => abandon(error, 1))
  try {
    if (servers && topology) await startServers(servers, topology)
    const url = options.target ?? servers!.url
    const sampler = servers && sampleProcesses(() => servers.pids())
    const shapes = profiles(options)
    console.log(
      `load: rate ×${options.rate}, ramp ${shapes.debit.rampS} s + plateau ${shapes.debit.plateauS} s against ${url}`
    )
    const result = await runLoad({ ...options, url, timeoutMs, signal: abort.signal, progress: reportProgress })
    // Interrupted: the servers are going away under the final checks; no summary to trust.
    if (abort.signal.aborted) return
    const casualties = servers?.casualties() ?? []
    const summary = summarize(result, {
      startedAt,
      code: describeCode(),
      options: {
        rate: options.rate,
        durationScale: options.durationScale,
        timeoutMs,
        connections: options.connections,
        poolMax: options.poolMax
      },
      topology: topology ?? `target ${url}`,
      description: servers?.description ?? 'already running (not started by the bench)',
      pinning: pinning.description,
      plateauTargetPerS: Object.values(shapes).reduce((sum, p) => sum + p.to, 0),
      server: sampler?.stop(),
      warnings: [...(servers?.notes ?? []), ...casualties, ...(servers?.nginxErrors() ?? [])]
    })
    printSummary(summary, await writeSummary(summary))
    if (summary.inconsistencies.total > 0 || casualties.length > 0) process.exitCode = 1
  } finally {
    console.log('tearing down...')
    await servers?.stop()
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error)
  process.exitCode = 1
})
