import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { migrate } from '../../src/db/migrate.js'
import { createSql, type Sql } from '../../src/db/pool.js'
import { createRedis } from '../../src/db/redis.js'
import { assertFreshBuild } from './build.js'
import { quietLog } from './database.js'
import {
  freePort,
  hasExited,
  killGroup,
  launch,
  mainScript,
  waitHealthy,
  waitForLine,
  type Launched,
  type LaunchOptions
} from './processes.js'

export { killGroup, mainScript, projectRoot } from './processes.js'

/**
 * Tests register and log in many users from 127.0.0.1: the abuse limits counted per address are
 * raised for them, and load shedding is off. A test of a limit sets the variable it tests.
 */
export const testLimits: Record<string, string> = {
  REGISTRATION_LIMIT_PER_MINUTE: '100000',
  REGISTRATION_TOTAL_LIMIT_PER_MINUTE: '1000000',
  LOGIN_ADDRESS_LIMIT_PER_MINUTE: '100000',
  LOGIN_EMAIL_LIMIT_PER_MINUTE: '100000',
  SHEET_MISS_LIMIT_PER_MINUTE: '1000000',
  PASSWORD_HASH_QUEUE_MAX: '100000',
  // Load shedding measures the process's own event loop: in-process apps share it with the test
  // runner, and a loaded CI machine would shed the very requests a test is about.
  OVERLOAD_EVENT_LOOP_DELAY_MS: '0',
  OVERLOAD_MAX_IN_FLIGHT: '0',
  OVERLOAD_DATABASE_WAIT_MS: '0'
}

/** The real app in this process, listening on 127.0.0.1 on a free port. */
export async function startApp(
  sql: Sql,
  env: Record<string, string> = {}
): Promise<{ url: string; app: FastifyInstance }> {
  const app = await buildApp({ config: testConfig(env), sql })
  return { url: await listen(app), app }
}

export interface AppReplica {
  url: string
  port: number
  app: FastifyInstance
  /** Closes the app, then its pool and Redis connection. */
  stop(): Promise<void>
}

/**
 * A replica in this process, made from `env` as `serve` makes one: a pool of its own with the
 * configured size and deadlines, the schema migrated, Redis when REDIS_URL is set. Two of them on
 * one database are two replicas, for every test whose subject is not the process itself (that
 * one spawns dist/ with spawnServer); they run the code under edit, and count in the coverage.
 */
export async function startReplica(env: Record<string, string>): Promise<AppReplica> {
  const config = testConfig(env)
  if (!config.databaseUrl) throw new Error('startReplica needs DATABASE_URL')
  const sql = createSql(config.databaseUrl, {
    max: config.databasePoolMax,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
    lockTimeoutMs: config.databaseLockTimeoutMs
  })
  await migrate(sql, quietLog)
  const redis = config.redisUrl ? createRedis(config.redisUrl, quietLog) : undefined
  const app = await buildApp({ config, sql, redis })
  const url = await listen(app)
  return {
    url,
    port: Number(new URL(url).port),
    app,
    async stop() {
      await app.close()
      await sql.end({ timeout: 5 })
      redis?.disconnect()
    }
  }
}

export const testConfig = (env: Record<string, string>) =>
  loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', ...testLimits, ...env })

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return `http://127.0.0.1:${port}`
}

export interface ServerProcess extends Launched {
  url: string
  port: number
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

export interface SpawnOptions {
  /** Wait until it answers /health (and, for `start`, until every worker listens). */
  waitReady?: boolean
  timeoutMs?: number
  /** CPUs to run on (taskset), for a benchmark. */
  cpus?: string
  /** A long run keeps only the tail of the output. */
  keepChars?: number
  /** A benchmark's replica: NODE_ENV=production and the shipped limits, not testLimits. */
  production?: boolean
}

/**
 * A server process from the built `dist/` (fails when dist/ is older than src/: `npm test` builds):
 * `serve` for one replica, `start` for the embedded cluster. Spawned in its own process group so a
 * test can kill -9 the whole tree. `env` overrides the defaults (NODE_ENV=test and testLimits,
 * unless `production`).
 */
export async function spawnServer(
  command: 'serve' | 'start',
  env: Record<string, string>,
  { waitReady = true, timeoutMs = 60_000, cpus, keepChars, production = false }: SpawnOptions = {}
): Promise<ServerProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort()
  // `start` logs at info so its "Tandem listening" line (every worker up) can be waited for.
  const defaults = {
    LOG_LEVEL: command === 'start' ? 'info' : 'warn',
    ...(production ? { NODE_ENV: 'production' } : testLimits)
  }
  const fullEnv = { ...defaults, ...env, PORT: String(port) }
  const launched = launchMain(`${command} :${port}`, [command], fullEnv, { cpus, keepChars })
  const { child, exited } = launched
  const server: ServerProcess = {
    ...launched,
    url: `http://127.0.0.1:${port}`,
    port,
    async stop(signal = 'SIGTERM') {
      if (!hasExited(child)) child.kill(signal)
      return exited
    }
  }
  if (!waitReady) return server
  try {
    await waitHealthy(server.url, [launched], timeoutMs)
    // One worker answering /health is not all of them: the primary says (at info) when every worker listens.
    if (command === 'start' && announces(fullEnv.LOG_LEVEL))
      await waitForLine(launched, /(Tandem listening)/, timeoutMs)
  } catch (error) {
    killGroup(child)
    throw error
  }
  return server
}

const announces = (level: string) => ['trace', 'debug', 'info'].includes(level)

/** `node dist/main.js <args>` in a process group of its own, as a test (NODE_ENV=test) unless `env` says otherwise. */
export function launchMain(
  name: string,
  args: string[],
  env: Record<string, string>,
  options: Omit<LaunchOptions, 'env'> = {}
): Launched {
  assertFreshBuild()
  return launch(name, [process.execPath, '--enable-source-maps', mainScript, ...args], {
    ...options,
    env: { NODE_ENV: 'test', LOG_LEVEL: 'warn', ...env }
  })
}

/** The JSON log lines of a process's output; other lines are left out. */
export function logLines(output: string): Array<Record<string, unknown>> {
  return output.split('\n').flatMap((line) => {
    try {
      return [JSON.parse(line)]
    } catch {
      return []
    }
  })
}
