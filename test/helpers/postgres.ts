import { readFileSync } from 'node:fs'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { readPostmaster as readLockFile, startEmbeddedPostgres, type EmbeddedServer } from '../../src/db/embedded.js'
import { quietLog } from './database.js'
import { freePort, killGroup, stopGroup, waitForLine, type Launched } from './processes.js'
import { launchMain } from './servers.js'

export { isGone } from './processes.js'

/** A fresh DATA_DIR; as root the embedded PostgreSQL runs as `postgres`, which must traverse it. */
export async function newDataDir(prefix = 'tandem-data-'): Promise<string> {
  const dataDir = await mkdtemp(path.join(tmpdir(), prefix))
  await chmod(dataDir, 0o755)
  return dataDir
}

/** Stops whatever postmaster still serves DATA_DIR, then deletes the directory. */
export async function removeDataDir(dataDir: string) {
  await stopLeftoverPostmaster(dataDir)
  await rm(dataDir, { recursive: true, force: true })
}

/** The running postmaster of DATA_DIR: pid and port, lines 1 and 4 of postmaster.pid. */
export async function readPostmaster(dataDir: string): Promise<{ pid: number; port: number }> {
  const postmaster = await readLockFile(path.join(dataDir, 'pg'))
  if (!postmaster) throw new Error(`no postmaster.pid in ${dataDir}/pg: PostgreSQL is not running there`)
  return postmaster
}

/** The postmaster still serving DATA_DIR, if any: after a failed test it may outlive its parent. */
export async function stopLeftoverPostmaster(dataDir: string) {
  const postmaster = await readLockFile(path.join(dataDir, 'pg'))
  // SIGINT is PostgreSQL's fast shutdown; the postmaster has a process group of its own for the SIGKILL.
  if (postmaster?.pid) await stopGroup(postmaster.pid, { signal: 'SIGINT', groupSignal: false, graceMs: 10_000 })
}

/** The embedded PostgreSQL's URL from DATA_DIR: credentials.json and the port in postmaster.pid. */
export async function embeddedUrl(dataDir: string): Promise<string> {
  const { user, password } = JSON.parse(readFileSync(path.join(dataDir, 'credentials.json'), 'utf8'))
  const { port } = await readPostmaster(dataDir)
  return `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`
}

export interface DatabaseProcess extends Launched {
  url: string
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>
}

/** `node dist/main.js postgres`: the embedded PostgreSQL alone (on a fixed port, if given), until SIGTERM. */
export async function startDatabaseCommand(
  dataDir: string,
  port?: number,
  options: { cpus?: string; env?: Record<string, string> } = {}
): Promise<DatabaseProcess> {
  const fixedPort: Record<string, string> = port === undefined ? {} : { EMBEDDED_POSTGRES_PORT: String(port) }
  const launched = launchMain(
    'postgres',
    ['postgres'],
    { ...options.env, DATA_DIR: dataDir, ...fixedPort },
    { cpus: options.cpus }
  )
  try {
    const url = await waitForLine(launched, /^DATABASE_URL=(\S+)$/m)
    return { ...launched, url, stop: () => stopCommand(launched) }
  } catch (error) {
    killGroup(launched.child)
    throw error
  }
}

function stopCommand({ child, exited }: Launched) {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
  return exited
}

export interface StoppableDatabase {
  url: string
  dataDir: string
  /** The running postmaster's process id (its process group's too). */
  readonly pid: number
  stop(): Promise<void>
  /** Starts again on the same port and data directory. */
  start(): Promise<void>
  remove(): Promise<void>
}

/** A PostgreSQL of the test's own that it can stop and start, in this process, on a fixed port. */
export async function startStoppableDatabase(prefix = 'tandem-pg-'): Promise<StoppableDatabase> {
  const dataDir = await newDataDir(prefix)
  const port = await freePort()
  let server: EmbeddedServer = await startEmbeddedPostgres(dataDir, quietLog, port)
  return {
    url: server.url,
    dataDir,
    get pid() {
      return server.pid
    },
    stop: () => server.stop(),
    async start() {
      server = await startEmbeddedPostgres(dataDir, quietLog, port)
    },
    async remove() {
      await server.stop()
      await removeDataDir(dataDir)
    }
  }
}
