import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { BlockList, isIP } from 'node:net'
import { hostname } from 'node:os'
import pino from 'pino'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './config.js'
import { oldestQueryWaitMs, type Sql } from './db/pool.js'
import type { Redis } from './db/redis.js'
import { accountsRoutes } from './modules/accounts/routes.js'
import { attendanceRoutes } from './modules/attendance/routes.js'
import { sessionStore } from './modules/accounts/sessions.js'
import { authPlugin } from './platform/auth.js'
import { counterRoutes } from './modules/counter/routes.js'
import { crebitosRoutes } from './modules/crebitos/routes.js'
import { incrementsRoutes } from './modules/increments/routes.js'
import { docsPlugin } from './platform/docs.js'
import { clientError, errorsPlugin, frameworkError, refuseConnect, unmetExpectation } from './platform/errors.js'
import { healthRoutes } from './platform/health.js'
import { idempotencyPlugin } from './platform/idempotency.js'
import { createLogger, type Logger } from './platform/logger.js'
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
  /** The process's logger (one per process); the app logs through a child naming the replica and worker. */
  log?: Logger
}

/** The HTTP app, read as a table of contents: platform first, then one plugin per module. */
export async function buildApp({
  config,
  sql,
  redis,
  worker = 0,
  log = createLogger(config)
}: AppOptions): Promise<FastifyInstance> {
  const trusted = proxyTrust(config.trustProxy)
  const app = Fastify({
    loggerInstance: log.child({ replica: hostname(), worker }) as FastifyBaseLogger,
    // One access line per request from the onResponse hook below, instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: requestIds(trusted),
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
    // request.ip, which the rate limits count by, and request.host/protocol.
    trustProxy: config.trustProxy === false ? false : trusted
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.server.maxConnections = config.maxConnections
  app.server.on('checkExpectation', unmetExpectation)
  app.server.on('connect', refuseConnect)
  // Every body the API reads is JSON. Fastify's default text/plain parser would hand a route a string
  // to fail validation with 422; without it, text/plain is the 415 any other type gets.
  app.removeContentTypeParser('text/plain')

  useValidation(app)
  // The access line: at info when ACCESS_LOG is on (production), else at debug. No query string,
  // header or body in it: a token, cookie or password never reaches the log. A level LOG_LEVEL
  // leaves out costs nothing: no hook at all.
  const accessLevel = config.accessLog ? 'info' : 'debug'
  if ((pino.levels.values[config.logLevel] ?? Infinity) <= pino.levels.values[accessLevel]) {
    app.addHook('onResponse', (request, reply, done) => {
      const query = request.url.indexOf('?')
      request.log[accessLevel](
        {
          method: request.method,
          route: request.routeOptions.url ?? 'unmatched',
          path: query === -1 ? request.url : request.url.slice(0, query),
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime * 100) / 100
        },
        'request'
      )
      done()
    })
  }

  await app.register(errorsPlugin, { exposeErrors: config.exposeErrors })
  await app.register(metricsPlugin, { sql, config })
  await app.register(overloadPlugin, { config, databaseWaitMs: () => oldestQueryWaitMs(sql) })
  await app.register(authPlugin, { sessions: sessionStore(sql, config), config })
  await app.register(securityPlugin)
  await app.register(docsPlugin)
  await app.register(healthRoutes, {
    checks: { database: () => sql`select 1`, ...(redis && { redis: () => redis.ping() }) },
    optional: ['redis']
  })
  await app.register(rateLimitPlugin, { sql })
  await app.register(idempotencyPlugin, {
    sql,
    ttlMs: config.idempotencyTtlMs,
    connectionWaitMs: config.databaseStatementTimeoutMs
  })
  await app.register(crebitosRoutes, { sql, statementsPerClient: config.crebitosStatementsPerClient })
  await app.register(counterRoutes, { sql, config, redis, worker })
  await app.register(accountsRoutes, { sql, config })
  await app.register(incrementsRoutes, { sql, config })
  await app.register(attendanceRoutes, { sql, config })
  await app.register(staticPlugin)
  return app
}

/**
 * Whether the `hop`-th address from this process (0: the connection's peer) is a proxy to trust, as
 * proxy-addr asks it, for Fastify's request.ip/host/protocol and for the request id alike: none, the
 * nearest `n` whoever they are (replicas only the proxy can reach: Compose, a Service), or the listed
 * addresses and CIDRs.
 */
function proxyTrust(trust: Config['trustProxy']): (address: string, hop: number) => boolean {
  if (trust === false) return () => false
  if (typeof trust === 'number') return (_address, hop) => hop < trust
  const proxies = new BlockList()
  for (const entry of trust.split(',')) {
    const [address, bits] = entry.trim().split('/')
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4'
    if (bits === undefined) proxies.addAddress(address, family)
    else proxies.addSubnet(address, Number(bits), family)
  }
  return (peer) => {
    const address = peer.startsWith('::ffff:') && isIP(peer.slice(7)) === 4 ? peer.slice(7) : peer
    return isIP(address) !== 0 && proxies.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4')
  }
}

const requestIdPattern = /^[\x21-\x7e]{1,128}$/

/**
 * Each request's id (in its log lines and its `X-Request-Id` answer header): the trusted proxy's
 * `X-Request-Id` (nginx's $request_id), so one request can be followed through nginx and the replica,
 * or a new one. A client's own header counts only through a trusted proxy.
 */
function requestIds(trusted: (address: string, hop: number) => boolean) {
  return (req: IncomingMessage) => {
    const given = req.headers['x-request-id']
    if (typeof given === 'string' && requestIdPattern.test(given) && trusted(req.socket.remoteAddress ?? '', 0))
      return given
    return randomUUID()
  }
}
