import Fastify, { LogController, type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './config.js'
import { oldestQueryWaitMs, type Sql } from './db/pool.js'
import type { Redis } from './db/redis.js'
import { accountsRoutes } from './modules/accounts/routes.js'
import { attendanceRoutes } from './modules/attendance/routes.js'
import { sessionsPlugin } from './modules/accounts/sessions.js'
import { counterRoutes } from './modules/counter/routes.js'
import { crebitosRoutes } from './modules/crebitos/routes.js'
import { incrementsRoutes } from './modules/increments/routes.js'
import { docsPlugin } from './platform/docs.js'
import { clientError, errorsPlugin, frameworkError, refuseConnect, unmetExpectation } from './platform/errors.js'
import { healthRoutes } from './platform/health.js'
import { loggerOptions } from './platform/logger.js'
import { metricsPlugin } from './platform/metrics.js'
import { overloadPlugin } from './platform/overload.js'
import { rateLimitPlugin } from './platform/rate-limit.js'
import { securityPlugin } from './platform/security.js'
import { staticPlugin } from './platform/static.js'
import { useValidation } from './platform/validation.js'

export interface AppOptions {
  config: Config
  sql: Sql
  redis?: Redis
  /** The worker number in the embedded cluster; 0 for a standalone replica. */
  worker?: number
}

/** The HTTP app, read as a table of contents: platform first, then one plugin per module. */
export async function buildApp ({ config, sql, redis, worker = 0 }: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { ...loggerOptions(config), base: { worker } },
    // Access lines go out at debug level from the onResponse hook below; nginx keeps its own.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    return503OnClosing: false, // server.ts answers its own 503 while draining
    forceCloseConnections: 'idle',
    // A slow client holds a socket, never more: its headers within headersTimeoutMs (checked every
    // second, not Node's default 30 s), the whole request within 30 s, an idle kept-alive socket closed
    // after keepAliveTimeoutMs (longer than nginx's upstream keepalive_timeout, so nginx closes first).
    http: { headersTimeout: config.headersTimeoutMs, connectionsCheckingInterval: 1000, requireHostHeader: false },
    requestTimeout: Math.max(30_000, config.headersTimeoutMs),
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // A GET answered for a HEAD would run its handler: the counter would count, a session be touched.
    // Only routes that ask for it (static files, health) answer HEAD.
    exposeHeadRoutes: false,
    routerOptions: { maxParamLength: 1000 },
    frameworkErrors: frameworkError,
    clientErrorHandler: clientError,
    // request.ip, which the rate limits count by, and request.host/protocol. A hop count trusts the
    // nearest peers, whoever they are: for replicas only the proxy can reach (Compose, a Service).
    trustProxy: typeof config.trustProxy === 'number' ? trustHops(config.trustProxy) : config.trustProxy
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.server.maxConnections = config.maxConnections
  app.server.on('checkExpectation', unmetExpectation)
  app.server.on('connect', refuseConnect)

  useValidation(app)
  if (config.logLevel === 'debug' || config.logLevel === 'trace') {
    app.addHook('onResponse', (request, reply, done) => {
      request.log.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: reply.elapsedTime }, 'request')
      done()
    })
  }

  await app.register(errorsPlugin, { exposeErrors: config.exposeErrors })
  await app.register(metricsPlugin)
  await app.register(overloadPlugin, { config, databaseWaitMs: () => oldestQueryWaitMs(sql) })
  await app.register(sessionsPlugin, { sql, config })
  await app.register(securityPlugin)
  await app.register(docsPlugin)
  await app.register(healthRoutes, {
    checks: { database: () => sql`select 1`, ...(redis && { redis: () => redis.ping() }) },
    optional: ['redis']
  })
  await app.register(rateLimitPlugin, { sql })
  await app.register(crebitosRoutes, { sql })
  await app.register(counterRoutes, { sql, config, redis, worker })
  await app.register(accountsRoutes, { sql, config })
  await app.register(incrementsRoutes, { sql, config })
  await app.register(attendanceRoutes, { sql, config })
  await app.register(staticPlugin)
  return app
}

/** proxy-addr's trust function for a hop count: the `hops` addresses nearest to this process. */
const trustHops = (hops: number) => (_address: string, hop: number) => hop < hops
