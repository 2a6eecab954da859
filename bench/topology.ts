import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os, { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { freePort } from '../src/db/embedded.js'
import { localNginxConf } from '../test/helpers/nginx.js'

export type TopologyName = 'nginx' | 'cluster'

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const mainScript = path.join(projectRoot, 'dist/main.js')
export const nginxBinary = '/usr/sbin/nginx'
const stopGraceMs = 10_000
const startTimeoutMs = 120_000

interface Launched {
  name: string
  child: ChildProcess
  output(): string
  /** Expected to run until the teardown; its exit fails the start-up and is reported. */
  watched: boolean
}

/**
 * The server side of a run, started under `cpus` (taskset) from fresh temporary directories and
 * torn down in reverse order by `stop`, which is safe to call at any point, more than once.
 */
export class ServerSide {
  url = ''
  description = ''
  /** In start order; stopped in reverse, one at a time, so nothing loses what it depends on first. */
  private readonly launched: Launched[] = []
  private readonly dirs: string[] = []
  private dataDir: string | undefined
  private nginxErrorLog: string | undefined
  private postmasterPid: number | undefined
  /** Oddities of the server side worth a line in the report. */
  readonly notes: string[] = []
  private stopping: Promise<void> | undefined

  /** postgres:// URL of the embedded PostgreSQL, to read its statistics around the API. */
  databaseUrl = ''

  /** `appEnv` goes to every API process (e.g. REDIS_URL). */
  constructor(private readonly cpus: string | undefined, private readonly poolMax: number, private readonly appEnv: Record<string, string> = {}) {}

  /** nginx (1 worker) in front of two `serve` replicas sharing one embedded PostgreSQL. */
  async startNginx() {
    this.dataDir = await this.tempDir('tandem-bench-data-')
    const database = this.launch('postgres', ['postgres'], { DATA_DIR: this.dataDir })
    const databaseUrl = await waitForLine(database, /^DATABASE_URL=(\S+)$/m)
    this.databaseUrl = databaseUrl
    this.postmasterPid = readPostmasterPid(this.dataDir)
    const replicas = await Promise.all([1, 2].map(() => this.startReplica(databaseUrl)))
    const confDir = await this.tempDir('tandem-bench-nginx-')
    const port = await freePort()
    const conf = path.join(confDir, 'nginx.conf')
    this.nginxErrorLog = path.join(confDir, 'error.log')
    await writeFile(conf, await nginxConf(confDir, port, replicas, this.nginxErrorLog))
    this.launchCommand('nginx', [nginxBinary, '-p', confDir, '-e', this.nginxErrorLog, '-c', conf], {})
    this.url = `http://127.0.0.1:${port}`
    await this.waitHealthy()
    this.description = `nginx (deploy/nginx/nginx.conf, 1 worker) → 2 × serve (DATABASE_POOL_MAX=${this.poolMax}) → embedded PostgreSQL`
  }

  /** `start`: node:cluster primary with 2 workers and its embedded PostgreSQL. */
  async startCluster() {
    this.dataDir = await this.tempDir('tandem-bench-data-')
    const port = await freePort()
    const env = { DATA_DIR: this.dataDir, PORT: String(port), WORKERS: '2', DATABASE_POOL_MAX: String(this.poolMax) }
    this.launch('cluster', ['start'], env)
    this.url = `http://127.0.0.1:${port}`
    await this.waitHealthy()
    this.postmasterPid = readPostmasterPid(this.dataDir)
    this.databaseUrl = embeddedUrl(this.dataDir)
    this.description = `node:cluster primary → 2 workers (DATABASE_POOL_MAX=${this.poolMax}) → embedded PostgreSQL`
  }

  /** Every process we started and the postmaster (its own process group); the sampler adds descendants. */
  pids(): number[] {
    const pids = this.launched.map((p) => p.child.pid).filter((pid): pid is number => pid !== undefined)
    return this.postmasterPid ? [...pids, this.postmasterPid] : pids
  }

  /** Watched processes that exited before the teardown, with their last output. */
  casualties(): string[] {
    return this.launched.filter((p) => p.watched && hasExited(p.child))
      .map((p) => `${p.name} exited with ${p.child.exitCode ?? p.child.signalCode}: ${p.output().slice(-2000)}`)
  }

  /** What nginx logged (it resets connections it cannot serve, so the driver sees only ECONNRESET). */
  nginxErrors(): string[] {
    const lines = (this.nginxErrorLog && existsSync(this.nginxErrorLog) ? readFileSync(this.nginxErrorLog, 'utf8') : '')
      .split('\n').filter(Boolean)
    if (lines.length === 0) return []
    // The message without its timestamp and connection numbers, to count each kind once.
    const kinds = new Map<string, number>()
    for (const line of lines) {
      const kind = line.replace(/^\S+ \S+ /, '').replace(/[#*]\d+/g, '').replace(/, client: .*$/, '').slice(0, 160)
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
    }
    return [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([kind, n]) => `nginx error.log, ${n} ×: ${kind}`)
  }

  stop(): Promise<void> {
    this.stopping ??= this.tearDown()
    return this.stopping
  }

  private async tearDown() {
    for (const launched of [...this.launched].reverse()) await stopProcess(launched)
    // Interrupted early, the pid may not have been read yet; the lock file still names it.
    const postmaster = this.postmasterPid ?? (this.dataDir && readPostmasterPid(this.dataDir))
    if (postmaster) await stopGroup(postmaster, () => !isAlive(postmaster))
    await Promise.all(this.dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  }

  private async startReplica(databaseUrl: string): Promise<number> {
    const port = await freePort()
    this.launch(`serve :${port}`, ['serve'], { PORT: String(port), DATABASE_URL: databaseUrl, DATABASE_POOL_MAX: String(this.poolMax) })
    await waitHealthy(`http://127.0.0.1:${port}`, this.launched)
    return port
  }

  private launch(name: string, args: string[], env: Record<string, string>): Launched {
    return this.launchCommand(name, [process.execPath, mainScript, ...args], {
      NODE_ENV: 'production', LOG_LEVEL: 'warn', HOST: '127.0.0.1', ...this.appEnv, ...env
    })
  }

  /** In its own process group, so a Ctrl-C in the terminal reaches the driver only and teardown keeps its order. */
  private launchCommand(name: string, command: string[], env: Record<string, string>): Launched {
    if (this.stopping) throw new Error(`not starting ${name}: the teardown has begun`)
    const argv = this.cpus ? ['taskset', '-c', this.cpus, ...command] : command
    const child = spawn(argv[0], argv.slice(1), {
      cwd: projectRoot,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }
    })
    let output = ''
    const keep = (chunk: Buffer) => { output = (output + chunk.toString()).slice(-16_384) }
    child.stdout!.on('data', keep)
    child.stderr!.on('data', keep)
    child.on('error', (error) => keep(Buffer.from(`spawn failed: ${error.message}\n`)))
    const launched = { name, child, output: () => output, watched: true }
    this.launched.push(launched)
    return launched
  }

  private async tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), prefix))
    this.dirs.push(dir)
    return dir
  }

  private waitHealthy() {
    return waitHealthy(this.url, this.launched)
  }
}

/**
 * The shipped deploy/nginx/nginx.conf (so the figures describe what users deploy), with only what a
 * benchmark run must change: the local replicas and port, one worker (pinned beside the replicas),
 * files (the access log included) under this run's directory, and the error log kept for the report.
 */
async function nginxConf(dir: string, port: number, upstreamPorts: number[], errorLog: string): Promise<string> {
  const shipped = await localNginxConf(upstreamPorts.map((p) => `127.0.0.1:${p}`), port)
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((kind) => `${kind}_temp_path ${path.join(dir, kind)};`).join('\n  ')
  const conf = shipped
    .replace(/^worker_processes [^;]+;/m, `# Adapted by bench/topology.ts for one benchmark run.
${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
daemon off;
pid ${path.join(dir, 'nginx.pid')};`)
    .replace(/error_log [^;]+;/, `error_log ${errorLog} warn;`)
    // Still written, as deployed (the image sends it to stdout), but into this run's directory.
    .replace(/access_log \/var\/log\/nginx\/access\.log /, `access_log ${path.join(dir, 'access.log')} `)
    .replace(/^http \{/m, `http {\n  ${temp}`)
  if (!conf.includes('worker_processes 1;') || !conf.includes(errorLog) || conf.includes('/var/log/nginx/')) throw new Error('deploy/nginx/nginx.conf no longer has the lines the benchmark adapts')
  return conf
}

async function waitForLine(launched: Launched, pattern: RegExp): Promise<string> {
  for (const deadline = Date.now() + startTimeoutMs; Date.now() < deadline; await sleep(100)) {
    const match = pattern.exec(launched.output())
    if (match) return match[1]
    if (hasExited(launched.child)) throw new Error(`${launched.name} exited during start-up:\n${launched.output()}`)
  }
  throw new Error(`${launched.name} printed no ${pattern} within ${startTimeoutMs / 1000} s:\n${launched.output()}`)
}

async function waitHealthy(url: string, processes: Launched[]) {
  for (const deadline = Date.now() + startTimeoutMs; Date.now() < deadline; await sleep(100)) {
    const dead = processes.find((p) => p.watched && hasExited(p.child))
    if (dead) throw new Error(`${dead.name} exited during start-up:\n${dead.output()}`)
    const ok = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) }).then((res) => res.ok, () => false)
    if (ok) return
  }
  throw new Error(`${url}/health did not answer within ${startTimeoutMs / 1000} s`)
}

/** The embedded PostgreSQL's URL from DATA_DIR: credentials.json and the port in postmaster.pid. */
function embeddedUrl(dataDir: string): string {
  const { user, password } = JSON.parse(readFileSync(path.join(dataDir, 'credentials.json'), 'utf8'))
  const port = readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[3]
  return `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`
}

function readPostmasterPid(dataDir: string): number | undefined {
  const file = path.join(dataDir, 'pg', 'postmaster.pid')
  if (!existsSync(file)) return undefined
  return Number.parseInt(readFileSync(file, 'utf8').split('\n')[0], 10) || undefined
}

async function stopProcess({ child }: Launched) {
  if (child.pid === undefined || hasExited(child)) return
  const exited = once(child, 'exit')
  await stopGroup(child.pid, () => hasExited(child), exited)
}

/** SIGTERM to the process group, SIGKILL after the grace period; the group leader's end decides. */
async function stopGroup(pgid: number, gone: () => boolean, exited?: Promise<unknown>) {
  for (const [signal, waitMs] of [['SIGTERM', stopGraceMs], ['SIGKILL', 2000]] as const) {
    if (gone()) return
    signalGroup(pgid, signal)
    await waitUntil(gone, waitMs, exited)
  }
}

async function waitUntil(done: () => boolean, timeoutMs: number, event?: Promise<unknown>) {
  const deadline = Date.now() + timeoutMs
  while (!done() && Date.now() < deadline) await Promise.race([sleep(50), event])
}

function signalGroup(pgid: number, signal: NodeJS.Signals) {
  try {
    process.kill(-pgid, signal)
  } catch {
    // already gone
  }
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

/** A zombie left to an init that does not reap counts as gone. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

export function hasTaskset(): boolean {
  return spawnSync('taskset', ['-V']).status === 0
}

/** The driver takes CPU 0 and leaves CPU 1 to the servers, so neither steals the other's time. */
export function pin(): { serverCpus: string | undefined, description: string } {
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
