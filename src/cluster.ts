import cluster, { type Worker } from 'node:cluster'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Config } from './config.js'
import { startEmbeddedPostgres, type EmbeddedServer } from './db/embedded.js'
import { migrate } from './db/migrate.js'
import { createSql } from './db/pool.js'
import { waitForDatabase } from './db/wait.js'
import type { Logger } from './platform/logger.js'
import { serveClusterMetrics, serveMetrics } from './platform/metrics.js'

/** The database the whole system uses: the configured one, or an embedded server of our own. */
export async function provideDatabase(
  config: Config,
  log: Logger
): Promise<{ url: string; embedded?: EmbeddedServer }> {
  if (config.databaseUrl) return { url: config.databaseUrl }
  const embedded = await startEmbeddedPostgres(config.dataDir, log, config.embeddedPostgresPort)
  return { url: embedded.url, embedded }
}

export async function migrateDatabase(url: string, config: Config, log: Logger) {
  const sql = createSql(url, { max: 1 })
  try {
    await waitForDatabase(sql, log, config.databaseWaitMs)
    const applied = await migrate(sql, log)
    log.info({ applied: applied.length }, applied.length ? 'database migrated' : 'database schema up to date')
  } finally {
    await sql.end({ timeout: 5 })
  }
}

/** The embedded cluster's API processes, from the moment they are forked. */
export interface Workers {
  /** Resolves once every worker listens (and the cluster's own /metrics port, when it has one). */
  listening: Promise<void>
  /**
   * SIGTERM to every worker, each draining on its own, and their exits awaited. Past their drain
   * deadline they are killed and it rejects. A worker that dies from then on is not replaced.
   */
  close(): Promise<void>
}

/**
 * WORKERS forked API processes sharing PORT: the primary hands out connections round robin, and
 * replaces a worker that dies. Returned at once, so that a signal during start-up drains the workers
 * there are.
 */
export function forkWorkers(config: Config, databaseUrl: string, log: Logger): Workers {
  let closing = false
  cluster.schedulingPolicy = cluster.SCHED_RR
  cluster.setupPrimary({ args: ['worker'] })
  const clusterMetrics = serveClusterMetrics()
  const fork = () => cluster.fork({ DATABASE_URL: databaseUrl })
  cluster.on('exit', (worker: Worker, code, signal) => {
    if (closing) return
    log.error({ worker: worker.id, code, signal }, 'worker died; starting a new one')
    setTimeout(() => {
      if (!closing) fork()
    }, 500).unref()
  })

  const workers = Array.from({ length: config.workers }, fork)
  const metrics =
    config.metricsPort === undefined
      ? undefined
      : serveMetrics(clusterMetrics, { host: config.metricsHost, port: config.metricsPort }, log)
  return {
    listening: Promise.all([metrics, ...workers.map((worker) => once(worker, 'listening'))]).then(() => undefined),
    async close() {
      closing = true
      log.info('draining workers')
      // Longer than a worker's own drain deadline, so that a worker's timeout is its own to report.
      if (await drainWorkers(config.shutdownTimeoutMs + 2000))
        throw new Error('workers did not stop in time; killed them')
    }
  }
}

/** SIGTERM to every live worker, then waits for them; true when some had to be killed. */
async function drainWorkers(timeoutMs: number): Promise<boolean> {
  const alive = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => !!worker && !worker.isDead())
  const exited = Promise.all(alive.map((worker) => once(worker, 'exit')))
  for (const worker of alive) worker.process.kill('SIGTERM')
  const timedOut = await Promise.race([exited.then(() => false), sleep(timeoutMs).then(() => true)])
  if (timedOut) for (const worker of alive) worker.process.kill('SIGKILL')
  return timedOut
}
