/**
 * The processes a scenario starts, and the one place that stops them: after each scenario, on the
 * run's hard deadline, and on Ctrl-C (replicas and PostgreSQL run in process groups of their own and
 * would outlive the run otherwise).
 */
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import postgres from 'postgres'
import { removeDataDir, startStoppableDatabase } from '../helpers/postgres.js'
import { isGone, killGroup } from '../helpers/processes.js'
import { logLines, spawnServer, type ServerProcess } from '../helpers/servers.js'
import { until } from '../helpers/wait.js'
import { target, type Target } from './transport.js'

const cleanups: Array<{ what: string; run: () => Promise<void> }> = []
const servers = new Set<ServerProcess>()
const postmasters = new Set<() => number>()

export function onCleanup(what: string, run: () => Promise<void>) {
  cleanups.push({ what, run })
}

/** Stops what the scenario started, newest first, each step bounded: a stuck step cannot hold the run. */
export async function cleanUp(log: (line: string) => void) {
  while (cleanups.length > 0) {
    const { what, run } = cleanups.pop()!
    const failed = await Promise.race([
      run().then(
        () => undefined,
        (error: Error) => error.message
      ),
      sleep(15_000).then(() => 'took over 15 s')
    ])
    if (failed) log(`faults: clean-up of ${what}: ${failed}`)
  }
}

/** kill -9 of everything still running, at once: for the hard deadline and signals. */
export function killEverything() {
  for (const server of servers) killGroup(server.child)
  for (const pid of postmasters) {
    try {
      process.kill(-pid(), 'SIGKILL')
    } catch {
      // gone already
    }
  }
}

/** A postmaster for killEverything (ownPostgres tracks its own; the run's embedded one is tracked by the run). */
export function trackPostmaster(pid: () => number): () => void {
  postmasters.add(pid)
  return () => postmasters.delete(pid)
}

export interface Replica extends ServerProcess {
  name: string
  target: Target
  alive(): boolean
}

/** A `serve` replica from dist/ logging JSON lines, stopped (kill -9 of its group) when the scenario ends. */
export async function startReplica(name: string, env: Record<string, string>): Promise<Replica> {
  // The access line of each request (at info), so that its errors can be matched with its answer.
  const server = await spawnServer('serve', { LOG_LEVEL: 'info', ACCESS_LOG: 'true', ...env })
  servers.add(server)
  const replica: Replica = Object.assign(server, {
    name,
    target: target(name, server.port),
    alive: () => server.child.exitCode === null && server.child.signalCode === null
  })
  onCleanup(`replica ${name}`, async () => {
    replica.target.agent.destroy()
    if (replica.alive()) killGroup(server.child)
    servers.delete(server)
  })
  return replica
}

/**
 * The replica's error-level log lines, told apart by the answer their request got (its access line):
 * a 503 is logged at error level with its cause, one line per refused request, and is what a fault
 * should cause; anything else (a 500, an error no request was answered with) is not.
 */
export function loggedErrors(replica: Replica): { refusals: number; unexpected: string[] } {
  const lines = logLines(replica.output()) as Array<{ level?: number; reqId?: string; msg?: string; status?: number }>
  const status = new Map(
    lines.filter((line) => line.msg === 'request' && line.reqId).map((line) => [line.reqId, line.status])
  )
  let refusals = 0
  const unexpected: string[] = []
  for (const line of lines) {
    if ((line.level ?? 0) < 50) continue
    if (line.reqId && status.get(line.reqId) === 503) refusals++
    else
      unexpected.push(
        `(${line.reqId ? `its request answered ${status.get(line.reqId) ?? 'nothing'}` : 'no request'}) ${JSON.stringify({ ...line, err: undefined })} ${JSON.stringify((line as { err?: unknown }).err).slice(0, 300)}`
      )
  }
  return { refusals, unexpected }
}

/** What the replica logged for one request (by its x-request-id) at warning level or above: why it refused it. */
export function loggedCause(replica: Replica, reqId: unknown): string {
  if (typeof reqId !== 'string') return 'no request id'
  const causes = (logLines(replica.output()) as Array<{ level?: number; reqId?: unknown; err?: unknown; msg?: string }>)
    .filter((line) => line.reqId === reqId && (line.level ?? 0) >= 40)
    .map(({ err, msg }) => `${msg}: ${typeof err === 'string' ? err : JSON.stringify(err)}`)
  return causes.join(' / ').slice(0, 300) || 'nothing logged'
}

/**
 * What a replica's end state says went wrong: it exited, or it logged errors besides those of its 503
 * refusals (the count of which goes to `log`).
 */
export function replicaProblems(replica: Replica, log: (line: string) => void): string[] {
  const problems: string[] = []
  if (!replica.alive())
    problems.push(
      `replica ${replica.name} exited (${replica.child.exitCode ?? replica.child.signalCode}): ${replica.output().slice(-800)}`
    )
  const { refusals, unexpected } = loggedErrors(replica)
  log(`  replica ${replica.name}: ${refusals} error-level log lines for 503 answers, ${unexpected.length} other errors`)
  if (unexpected.length > 0)
    problems.push(`replica ${replica.name} logged ${unexpected.length} errors besides its 503s, e.g. ${unexpected[0]}`)
  return problems
}

export interface OwnPostgres {
  url: string
  dataDir: string
  /** Fast shutdown (SIGINT): sessions are ended, it checkpoints and exits. */
  stop(): Promise<void>
  /** Starts again on the same port and data directory (after a crash: with its recovery). */
  start(): Promise<void>
  /** kill -9 of the postmaster and every backend (its process group), at once and synchronously. */
  kill(): void
  /** Resolves once the killed postmaster is gone for good (reaped), so it can be started again. */
  gone(): Promise<void>
  /** A short connection of the test's own, around the API. */
  connect(): postgres.Sql
  /** Its server log since the data directory was made. */
  log(): Promise<string>
}

/**
 * A PostgreSQL of the scenario's own (startStoppableDatabase, test/helpers/postgres.ts) that can
 * also be killed -9, is killed by killEverything, and says where its log is.
 */
export async function ownPostgres(): Promise<OwnPostgres> {
  const db = await startStoppableDatabase('tandem-faults-pg-')
  const pid = () => db.pid
  postmasters.add(pid)
  const connections: postgres.Sql[] = []
  onCleanup('PostgreSQL', async () => {
    for (const sql of connections) await sql.end({ timeout: 1 })
    postmasters.delete(pid)
    await removeDataDir(db.dataDir)
  })
  return {
    url: db.url,
    dataDir: db.dataDir,
    stop: () => db.stop(),
    start: () => db.start(),
    kill() {
      try {
        process.kill(-db.pid, 'SIGKILL')
      } catch {
        // gone already
      }
    },
    async gone() {
      const killed = db.pid
      await until(() => isGone(killed), 'the killed postmaster to be reaped', 15_000)
    },
    connect() {
      const sql = postgres(db.url, { max: 2, onnotice: () => {}, connect_timeout: 3 })
      connections.push(sql)
      return sql
    },
    log: () => readFile(path.join(db.dataDir, 'postgres.log'), 'utf8').catch(() => '')
  }
}
