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
export async function provideDatabase (config: Config, log: Logger): Promise<{ url: string, embedded?: EmbeddedServer }> {
  if (config.databaseUrl) return { url: config.databaseUrl }
  const embedded = await startEmbeddedPostgres(config.dataDir, log, config.embeddedPostgresPort)
  return { url: embedded.url, embedded }
}

export async function migrateDatabase (url: string, config: Config, log: Logger) {
  const sql = createSql(url, { max: 1 })
  try {
    await waitForDatabase(sql, log, config.databaseWaitMs)
    const applied = await migrate(sql, log)
    log.info({ applied: applied.length }, applied.length ? 'database migrated' : 'database schema up to date')
  } finally {
    await sql.end({ timeout: 5 })
  }
}

/**
 * The embedded supervisor: database, migrations once, then WORKERS forked API processes sharing
 * PORT (the primary hands out connections round robin). A worker that dies is replaced; SIGTERM or
 * Ctrl-C, at any moment from start-up on, drains the workers there are, then stops the embedded
 * database.
 */
export async function runPrimary (config: Config, log: Logger) {
  const databaseReady = provideDatabase(config, log)
  let stopping = false

  const shutdown = async (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'stopping: draining workers')
    const timedOut = await drainWorkers(config.shutdownTimeoutMs + 2000)
    if (timedOut) log.error('workers did not stop in time; killed them')
    // A signal during start-up waits for the database it started, to stop it rather than orphan it.
    const started = await databaseReady.catch(() => undefined)
    await started?.embedded?.stop()
    log.info('stopped')
    process.exit(timedOut ? 1 : 0)
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'))
  process.on('SIGINT', () => void shutdown('SIGINT'))

  const database = await databaseReady
  const { embedded } = database
  if (stopping) return // shutdown stops the database and exits
  try {
    await migrateDatabase(database.url, config, log)
  } catch (error) {
    await embedded?.stop()
    throw error
  }

  cluster.schedulingPolicy = cluster.SCHED_RR
  cluster.setupPrimary({ args: ['worker'] })
  const clusterMetrics = serveClusterMetrics()
  if (config.metricsPort !== undefined) await serveMetrics(clusterMetrics, { host: config.metricsHost, port: config.metricsPort }, log)
  const fork = () => cluster.fork({ DATABASE_URL: database.url, TANDEM_WORKER: '1' })
  cluster.on('exit', (worker: Worker, code, signal) => {
    if (stopping) return
    log.error({ worker: worker.id, code, signal }, 'worker died; starting a new one')
    setTimeout(fork, 500).unref()
  })

  const workers = Array.from({ length: config.workers }, fork)
  await Promise.all(workers.map((worker) => once(worker, 'listening')))
  log.info({
    url: `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${config.port}`,
    workers: config.workers,
    database: embedded ? `embedded PostgreSQL pid ${embedded.pid} (${config.dataDir})` : 'DATABASE_URL'
  }, `Tandem listening on ${config.host}:${config.port}`)
}

/** SIGTERM to every live worker, then waits for them; true when some had to be killed. */
async function drainWorkers (timeoutMs: number): Promise<boolean> {
  const alive = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => !!worker && !worker.isDead())
  const exited = Promise.all(alive.map((worker) => once(worker, 'exit')))
  for (const worker of alive) worker.process.kill('SIGTERM')
  const timedOut = await Promise.race([exited.then(() => false), sleep(timeoutMs).then(() => true)])
  if (timedOut) for (const worker of alive) worker.process.kill('SIGKILL')
  return timedOut
}
