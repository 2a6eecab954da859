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

/** One API process: wait for the database, migrate if asked, listen, and drain on SIGTERM/SIGINT. */
export async function serve ({ config, databaseUrl, log, runMigrations, worker }: ServeOptions): Promise<FastifyInstance> {
  const sql = createSql(databaseUrl, { max: config.databasePoolMax, statementTimeoutMs: config.databaseStatementTimeoutMs, lockTimeoutMs: config.databaseLockTimeoutMs })
  await waitForDatabase(sql, log, config.databaseWaitMs)
  if (runMigrations) await migrate(sql, log)
  const redis = config.redisUrl ? createRedis(config.redisUrl, log) : undefined
  const app = await buildApp({ config, sql, redis, worker })
  // A cluster worker's figures are served by the primary, summed over the workers.
  const metricsServer = config.metricsPort !== undefined && worker === undefined
    ? await serveMetrics(() => app.metrics.metrics(), { host: config.metricsHost, port: config.metricsPort }, log)
    : undefined

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
  const shutdown = (signal: string) => {
    closing ??= (async () => {
      app.log.info({ signal }, 'draining in-flight requests')
      const timer = setTimeout(() => {
        app.log.error({ timeoutMs: config.shutdownTimeoutMs }, 'drain timed out, exiting')
        process.exit(1)
      }, config.shutdownTimeoutMs).unref()
      await app.close()
      metricsServer?.close()
      await sql.end({ timeout: 5 })
      redis?.disconnect()
      clearTimeout(timer)
      app.log.info('stopped')
      process.exit(0)
    })()
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  process.once('SIGINT', () => shutdown('SIGINT'))

  await app.listen({ port: config.port, host: config.host })
  return app
}
