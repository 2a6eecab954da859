import type { FastifyInstance } from 'fastify'
import type { Config } from './config.js'
import { buildApp } from './app.js'
import { migrate } from './db/migrate.js'
import { createSql } from './db/pool.js'
import { createRedis } from './db/redis.js'
import { waitForDatabase } from './db/wait.js'
import { Unavailable } from './platform/errors.js'
import { serveMetrics } from './platform/metrics.js'
import type { Logger } from './platform/logger.js'

export interface ServeOptions {
  config: Config
  databaseUrl: string
  log: Logger
  /** A replica on its own migrates (under the lock); cluster workers leave it to the primary. */
  runMigrations: boolean
  /** The worker number in the embedded cluster; 0 for a standalone replica. */
  worker?: number
}

/** A listening API process. Whoever started it decides when to close it (main.ts: on a signal). */
export interface Server {
  app: FastifyInstance
  /**
   * Drains: new requests get 503, those in flight are answered, increments are committed, then the
   * pools close. Rejects after SHUTDOWN_TIMEOUT_MS, the drain left unfinished. Later calls share the first.
   */
  close(): Promise<void>
}

/** One API process: wait for the database, migrate if asked, listen; the handle drains it. */
export async function serve({ config, databaseUrl, log, runMigrations, worker }: ServeOptions): Promise<Server> {
  const sql = createSql(databaseUrl, {
    max: config.databasePoolMax,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
    lockTimeoutMs: config.databaseLockTimeoutMs
  })
  await waitForDatabase(sql, log, config.databaseWaitMs)
  if (runMigrations) await migrate(sql, log)
  const redis = config.redisUrl ? createRedis(config.redisUrl, log) : undefined
  const app = await buildApp({ config, sql, redis, worker, log })
  // A cluster worker's figures are served by the primary, summed over the workers.
  const metricsServer =
    config.metricsPort !== undefined && worker === undefined
      ? await serveMetrics(() => app.metrics.metrics(), { host: config.metricsHost, port: config.metricsPort }, log)
      : undefined

  const close = drainer(app, config.shutdownTimeoutMs, async () => {
    metricsServer?.close()
    await sql.end({ timeout: 5 })
    redis?.disconnect()
  })
  await app.listen({ port: config.port, host: config.host })
  return { app, close }
}

/**
 * The close of a Server: app.close() waits for the requests in flight (and the plugins' onClose
 * hooks: the increments still queued are committed), then `release` lets go of the pools.
 */
function drainer(app: FastifyInstance, timeoutMs: number, release: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined
  // While draining, a request that arrives on a kept-alive connection gets our 503, and every answer
  // closes its connection: a kept-alive socket would hold the close open.
  app.addHook('onRequest', (_request, _reply, done) => {
    done(closing ? new Unavailable('shutting down, retry on another replica') : undefined)
  })
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close')
    done(null, payload)
  })
  const drain = async () => {
    app.log.info('draining in-flight requests')
    await app.close()
    await release()
  }
  return () => {
    closing ??= deadline(drain(), timeoutMs, 'drain timed out')
    return closing
  }
}

/** `work`, or a rejection once `ms` have passed: a drain that hangs must not keep the process forever. */
function deadline(work: Promise<void>, ms: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} after ${ms} ms`)), ms).unref()
  })
  return Promise.race([work, expired]).finally(() => clearTimeout(timer))
}
