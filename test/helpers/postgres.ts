import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, startEmbeddedPostgres, type EmbeddedServer } from '../../src/db/embedded.js'
import { quietLog } from './database.js'
import { killGroup, mainScript, projectRoot } from './servers.js'
import { until } from './wait.js'

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
export async function readPostmaster(dataDir: string): Promise<{ pid: number, port: number }> {
  const lines = (await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')
  return { pid: Number.parseInt(lines[0], 10), port: Number.parseInt(lines[3], 10) }
}

/** Gone for good: a zombie still answers kill(pid, 0), and PostgreSQL refuses to start over one. */
export function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH'
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}

/** After a failed test, the embedded postmaster (its own process group) may outlive its parent. */
export async function stopLeftoverPostmaster(dataDir: string) {
  if (!existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))) return
  const { pid } = await readPostmaster(dataDir)
  if (!pid || isGone(pid)) return
  try {
    process.kill(pid, 'SIGINT') // fast shutdown
  } catch {
    return
  }
  for (const deadline = Date.now() + 10_000; !isGone(pid) && Date.now() < deadline; ) await sleep(100)
  if (!isGone(pid)) {
    try {
      process.kill(-pid, 'SIGKILL')
    } catch {
      // gone meanwhile
    }
  }
}

export interface DatabaseProcess {
  url: string
  child: ChildProcess
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>
}

/** `node dist/main.js postgres`: the embedded PostgreSQL alone, on a fixed port, until SIGTERM. */
export async function startDatabaseCommand(dataDir: string, port: number): Promise<DatabaseProcess> {
  const child = spawn(process.execPath, [mainScript, 'postgres'], {
    cwd: projectRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'test', LOG_LEVEL: 'warn', DATA_DIR: dataDir, EMBEDDED_POSTGRES_PORT: String(port) }
  })
  let output = ''
  child.stdout!.on('data', (chunk) => { output += chunk })
  child.stderr!.on('data', (chunk) => { output += chunk })
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  try {
    await until(() => {
      if (child.exitCode !== null) throw new Error(`\`postgres\` exited during start-up:\n${output}`)
      return /^DATABASE_URL=\S+$/m.test(output)
    }, 'the `postgres` command to print its URL', 60_000)
  } catch (error) {
    killGroup(child)
    throw error
  }
  return {
    url: /^DATABASE_URL=(\S+)$/m.exec(output)![1],
    child,
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      return exited
    }
  }
}

export interface StoppableDatabase {
  url: string
  stop(): Promise<void>
  /** Starts again on the same port and data directory. */
  start(): Promise<void>
  remove(): Promise<void>
}

/** A PostgreSQL of the test's own that it can stop and start, in this process, on a fixed port. */
export async function startStoppableDatabase(): Promise<StoppableDatabase> {
  const dataDir = await newDataDir('tandem-pg-')
  const port = await freePort()
  let server: EmbeddedServer = await startEmbeddedPostgres(dataDir, quietLog, port)
  return {
    url: server.url,
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
