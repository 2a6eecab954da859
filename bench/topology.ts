import { spawnSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import os, { tmpdir } from 'node:os'
import path from 'node:path'
import { parse } from 'yaml'
import { startNginx, type NginxProcess } from '../test/helpers/nginx.js'
import { embeddedUrl, readPostmaster, removeDataDir } from '../test/helpers/postgres.js'
import {
  freePort,
  hasExited,
  isGone,
  launch,
  projectRoot,
  signalGroup,
  stopLaunched,
  waitForLine,
  waitHealthy,
  type Launched
} from '../test/helpers/processes.js'
import { launchMain, spawnServer } from '../test/helpers/servers.js'

export { nginxBinary } from '../test/helpers/nginx.js'
export { projectRoot } from '../test/helpers/processes.js'

export type TopologyName = 'nginx' | 'cluster'

/**
 * NODE_OPTIONS of the API replicas in deploy/compose.rinha.yaml (heap and young-generation sizes):
 * the bench runs Tandem's processes as the submission runs them, and the baseline's the same way.
 */
export function rinhaNodeOptions(): string {
  return (nodeOptions ??= readRinhaNodeOptions())
}

let nodeOptions: string | undefined

function readRinhaNodeOptions(): string {
  const compose = parse(readFileSync(path.join(projectRoot, 'deploy/compose.rinha.yaml'), 'utf8'), { merge: true }) as {
    services: Record<string, { environment?: Record<string, string> }>
  }
  const options = compose.services.api01?.environment?.NODE_OPTIONS
  if (!options) throw new Error('deploy/compose.rinha.yaml: api01 has no NODE_OPTIONS')
  return options
}

/**
 * What answers behind nginx: Tandem's `serve`, or bench/baseline/server.mjs (node:http + postgres.js,
 * the same SQL) on Tandem's durable tables (`baseline`) or on UNLOGGED copies of them (`unlogged`), or
 * the same routes on bare Fastify (bench/baseline/fastify.mjs, `fastify`: what the framework costs).
 */
export type ApiName = 'tandem' | 'baseline' | 'unlogged' | 'fastify'
export const apiNames: readonly ApiName[] = ['tandem', 'baseline', 'unlogged', 'fastify']

/** The script of a baseline, and whether it runs on the UNLOGGED tables. */
export function baselineScript(api: Exclude<ApiName, 'tandem'>): { script: string; unlogged: boolean } {
  return { script: `bench/baseline/${api === 'fastify' ? 'fastify' : 'server'}.mjs`, unlogged: api === 'unlogged' }
}

const startTimeoutMs = 120_000
/** The tail of a process's output kept for the report: a long run must not hold all of it. */
const keepChars = 16_384

interface Running {
  launched: Launched
  stop(): Promise<unknown>
}

/**
 * The server side of a run, started under `cpus` (taskset) from fresh temporary directories and
 * torn down in reverse order by `stop`, which is safe to call at any point, more than once. The
 * processes come from the test harness (test/helpers), so a benchmark runs what the tests run.
 */
export class ServerSide {
  url = ''
  description = ''
  /** In start order; stopped in reverse, one at a time, so nothing loses what it depends on first. */
  private readonly running: Running[] = []
  private readonly dirs: string[] = []
  private dataDir: string | undefined
  private nginx: NginxProcess | undefined
  private postmasterPid: number | undefined
  /** Oddities of the server side worth a line in the report. */
  readonly notes: string[] = []
  private stopping: Promise<void> | undefined
  private tornDown = false

  /** postgres:// URL of the embedded PostgreSQL, to read its statistics around the API. */
  databaseUrl = ''

  /** `appEnv` goes to every API process (e.g. REDIS_URL). */
  constructor(
    private readonly cpus: string | undefined,
    private readonly poolMax: number,
    private readonly appEnv: Record<string, string> = {}
  ) {}

  /** nginx (1 worker, deploy/nginx/nginx.conf) in front of two replicas of `api` sharing one embedded PostgreSQL. */
  async startNginx(api: ApiName = 'tandem') {
    const baseline = api === 'tandem' ? undefined : baselineScript(api)
    this.dataDir = await this.tempDir('tandem-bench-data-')
    this.assertRunning('postgres')
    const database = this.track(
      launchMain(
        'postgres',
        ['postgres'],
        { NODE_ENV: 'production', DATA_DIR: this.dataDir },
        { cpus: this.cpus, keepChars }
      )
    )
    this.databaseUrl = await waitForLine(database, /^DATABASE_URL=(\S+)$/m, startTimeoutMs)
    this.postmasterPid = (await readPostmaster(this.dataDir)).pid
    const replicas = await Promise.all(
      [1, 2].map((n) =>
        baseline
          ? this.startBaseline(`${api}-${n}`, baseline)
          : this.startApi('serve', { DATABASE_URL: this.databaseUrl })
      )
    )
    this.assertRunning('nginx')
    this.nginx = await startNginx(
      replicas.map((port) => `127.0.0.1:${port}`),
      { workers: 1, cpus: this.cpus }
    )
    this.track(this.nginx, () => this.nginx!.stop())
    this.url = this.nginx.url
    await this.waitHealthy()
    const replica = baseline ? `${baseline.script}${baseline.unlogged ? ' UNLOGGED=1' : ''}` : 'serve'
    this.description = `nginx (deploy/nginx/nginx.conf, 1 worker) → 2 × ${replica} (DATABASE_POOL_MAX=${this.poolMax}) → embedded PostgreSQL`
  }

  /** `start`: node:cluster primary with 2 workers and its embedded PostgreSQL. */
  async startCluster() {
    this.dataDir = await this.tempDir('tandem-bench-data-')
    await this.startApi('start', { DATA_DIR: this.dataDir, WORKERS: '2' })
    this.postmasterPid = (await readPostmaster(this.dataDir)).pid
    this.databaseUrl = await embeddedUrl(this.dataDir)
    this.description = `node:cluster primary → 2 workers (DATABASE_POOL_MAX=${this.poolMax}) → embedded PostgreSQL`
  }

  /** Every process we started and the postmaster (its own process group); the sampler adds descendants. */
  pids(): number[] {
    const pids = this.running
      .map(({ launched }) => launched.child.pid)
      .filter((pid): pid is number => pid !== undefined)
    return this.postmasterPid ? [...pids, this.postmasterPid] : pids
  }

  /** Processes that exited before the teardown, with their last output. */
  casualties(): string[] {
    return this.running
      .map(({ launched }) => launched)
      .filter((launched) => hasExited(launched.child))
      .map(
        ({ name, child, output }) =>
          `${name} exited with ${child.exitCode ?? child.signalCode}: ${output().slice(-2000)}`
      )
  }

  /** nginx's access log so far, one JSON line per request (deploy/nginx/nginx.conf's `tandem_json`); none without nginx. */
  nginxAccessLog(): Promise<string> | undefined {
    return this.nginx?.accessLog()
  }

  /** What nginx logged (it resets connections it cannot serve, so the driver sees only ECONNRESET). */
  nginxErrors(): string[] {
    const lines = (this.nginx?.errors() ?? '').split('\n').filter(Boolean)
    // The message without its timestamp and connection numbers, to count each kind once.
    const kinds = new Map<string, number>()
    for (const line of lines) {
      const kind = line
        .replace(/^\S+ \S+ /, '')
        .replace(/[#*]\d+/g, '')
        .replace(/, client: .*$/, '')
        .slice(0, 160)
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
    }
    return [...kinds]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([kind, n]) => `nginx error.log, ${n} ×: ${kind}`)
  }

  stop(): Promise<void> {
    this.stopping ??= this.tearDown().finally(() => {
      this.tornDown = true
    })
    return this.stopping
  }

  /**
   * Last resort when the bench exits without its teardown (a second Ctrl-C, a crash): kill -9 of
   * every process group it started and of the postmaster, and its directories removed, synchronously.
   */
  killNow() {
    for (const { launched } of this.running) {
      if (launched.child.pid !== undefined && !hasExited(launched.child)) signalGroup(launched.child.pid, 'SIGKILL')
    }
    if (this.postmasterPid && !isGone(this.postmasterPid)) signalGroup(this.postmasterPid, 'SIGKILL')
    // nginx's own directory is its `-p` prefix.
    const spawnargs = this.nginx?.child.spawnargs ?? []
    const nginxDir = spawnargs[spawnargs.indexOf('-p') + 1]
    for (const dir of [...this.dirs, ...(spawnargs.includes('-p') ? [nginxDir] : [])])
      rmSync(dir, { recursive: true, force: true })
  }

  private async tearDown() {
    // Popped, not iterated over a copy: a process still starting when the teardown began (a replica
    // spawned while another was being waited for) is tracked late, and stopped here all the same.
    for (let next = this.running.pop(); next; next = this.running.pop()) await next.stop()
    // Interrupted early, the postmaster may not have been seen yet; its lock file still names it.
    if (this.dataDir) await removeDataDir(this.dataDir)
    await Promise.all(this.dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  }

  /** A `serve` replica or the `start` cluster, on a free port, as production runs it; resolves with its port once healthy. */
  private async startApi(command: 'serve' | 'start', env: Record<string, string>): Promise<number> {
    this.assertRunning(command)
    const server = await spawnServer(
      command,
      {
        LOG_LEVEL: 'warn',
        HOST: '127.0.0.1',
        DATABASE_POOL_MAX: String(this.poolMax),
        NODE_OPTIONS: rinhaNodeOptions(),
        ...this.appEnv,
        ...env
      },
      { waitReady: false, production: true, cpus: this.cpus, keepChars }
    )
    this.track(server)
    if (command === 'start') this.url = server.url
    await waitHealthy(server.url, this.launched(), startTimeoutMs)
    return server.port
  }

  /** One replica of a baseline server; resolves with its port once it answers. */
  private async startBaseline(name: string, { script, unlogged }: ReturnType<typeof baselineScript>): Promise<number> {
    this.assertRunning(name)
    const port = await freePort()
    const server = this.track(
      launch(name, [process.execPath, script], {
        env: {
          PORT: String(port),
          HOST: '127.0.0.1',
          DATABASE_URL: this.databaseUrl,
          DATABASE_POOL_MAX: String(this.poolMax),
          // The same V8 sizes as Tandem's replicas: the comparison is of the code, not of the flags.
          NODE_OPTIONS: rinhaNodeOptions(),
          ...(unlogged && { UNLOGGED: '1' })
        },
        cpus: this.cpus,
        keepChars
      })
    )
    await waitHealthy(`http://127.0.0.1:${port}`, [server], startTimeoutMs)
    return port
  }

  /** Stopped in the teardown: SIGTERM to its group, SIGKILL if it lingers. */
  private track<T extends Launched>(launched: T, stop = () => stopLaunched(launched)): T {
    this.running.push({ launched, stop })
    // Launched after the teardown has run to its end: nobody else will stop it.
    if (this.tornDown) void this.stop().then(() => this.tearDown())
    return launched
  }

  private assertRunning(name: string) {
    if (this.stopping) throw new Error(`not starting ${name}: the teardown has begun`)
  }

  private launched(): Launched[] {
    return this.running.map(({ launched }) => launched)
  }

  private async tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), prefix))
    this.dirs.push(dir)
    return dir
  }

  private waitHealthy() {
    return waitHealthy(this.url, this.launched(), startTimeoutMs)
  }
}

export function hasTaskset(): boolean {
  return spawnSync('taskset', ['-V']).status === 0
}

/** The driver takes CPU 0 and leaves CPU 1 to the servers, so neither steals the other's time. */
export function pin(): { serverCpus: string | undefined; description: string } {
  if (!hasTaskset()) {
    console.warn('\n!!! taskset is not installed: the driver and the servers run UNPINNED and share every core\n')
    return { serverCpus: undefined, description: 'unpinned (no taskset)' }
  }
  if (os.availableParallelism() < 2) {
    console.warn('\n!!! one CPU only: the driver and the servers run unpinned on it\n')
    return { serverCpus: undefined, description: 'unpinned (one CPU)' }
  }
  // -a: every thread of this process, libuv's pool included; later threads inherit it.
  const pinned = spawnSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)]).status === 0
  if (!pinned) console.warn('\n!!! could not pin the driver to CPU 0: it runs unpinned\n')
  return { serverCpus: '1', description: `${pinned ? 'driver on CPU 0' : 'driver unpinned'}, servers on CPU 1` }
}
