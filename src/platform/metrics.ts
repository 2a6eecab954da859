import cluster from 'node:cluster'
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { Config } from '../config.js'
import { queryStats, type Sql } from '../db/pool.js'
import { TooManyRequests, within } from './errors.js'
import type { Logger } from './logger.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** This process's Prometheus registry: modules add their business figures to it. */
    metrics: Registry
  }
}

export interface MetricsOptions {
  sql: Sql
  config: Pick<Config, 'metricsPort' | 'databasePoolMax'>
}

const request = 'tandem:metrics-request'
const response = 'tandem:metrics-response'
const askTimeoutMs = 3000
const probeTimeoutMs = 1000

/**
 * prom-client's default figures that are gauges named like counters (`promtool check metrics` says
 * so); their unsuffixed twins (`nodejs_active_handles`…) carry the same numbers.
 */
const misnamedDefaults = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total'
]

/** A registry with the process figures every Tandem process exposes. */
function processRegistry(): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  for (const name of misnamedDefaults) registry.removeSingleMetric(name)
  return registry
}

/**
 * Per-route latency histograms, error counts (the status label), process figures, the database as
 * this process sees it, requests refused by each limit, and whatever the modules register. `/metrics`
 * is served on the API port unless METRICS_PORT is set (then `serveMetrics` serves it there, and the
 * API port answers 404). In the embedded cluster any worker's `/metrics` answers for all of them: it
 * asks the primary, which gathers every worker's registry.
 */
export const metricsPlugin = fp(
  async (app: FastifyInstance, { sql, config }: MetricsOptions) => {
    const registry = processRegistry()
    if (cluster.isWorker) {
      // Constructing one makes prom-client answer the primary's requests for this worker's figures.
      new AggregatorRegistry()
      AggregatorRegistry.setRegistries([registry])
    }
    app.decorate('metrics', registry)

    const duration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP requests by route and status, with their latency',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry]
    })
    app.addHook('onResponse', (req, reply, done) => {
      const route = req.routeOptions.url ?? 'unmatched'
      duration.observe({ method: req.method, route, status_code: reply.statusCode }, reply.elapsedTime / 1000)
      done()
    })

    const limited = new Counter({
      name: 'tandem_rate_limit_refused_total',
      help: 'Requests answered 429 by an abuse or concurrency limit, by the limit',
      labelNames: ['limit'],
      registers: [registry]
    })
    app.addHook('onError', (_req, _reply, error, done) => {
      if (error instanceof TooManyRequests) limited.inc({ limit: error.limit })
      done()
    })

    databaseMetrics(sql, config.databasePoolMax, registry)

    if (config.metricsPort === undefined) {
      app.get('/metrics', { schema: { hide: true }, config: { exemptFromShedding: true } }, async (_req, reply) => {
        const text = cluster.isWorker ? await askPrimary() : await registry.metrics()
        return reply.type(registry.contentType).send(text)
      })
    }
  },
  { name: 'metrics' }
)

/** Query latency and failures, queries in flight against the pool's size, and whether PostgreSQL answers. */
function databaseMetrics(sql: Sql, poolMax: number, registry: Registry) {
  const queries = new Histogram({
    name: 'tandem_database_query_duration_seconds',
    help: 'Queries from handing them to the pool to their answer (a wait for a connection included), by outcome',
    labelNames: ['outcome'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry]
  })
  for (const outcome of ['ok', 'error', 'timeout']) queries.zero({ outcome })
  const stats = queryStats(sql)
  if (stats) stats.observe = (seconds, outcome) => queries.observe({ outcome }, seconds)
  new Gauge({
    name: 'tandem_database_queries_in_flight',
    help: 'Queries handed to the pool and not answered yet: running, or waiting for a connection',
    registers: [registry],
    collect() {
      this.set(stats?.inFlight ?? 0)
    }
  })
  new Gauge({
    name: 'tandem_database_pool_size',
    help: 'Connections the pool of this process may open (DATABASE_POOL_MAX)',
    registers: [registry],
    collect() {
      this.set(poolMax)
    }
  })
  new Gauge({
    name: 'tandem_database_up',
    help: 'Whether PostgreSQL answered `select 1` within a second, asked at each scrape',
    registers: [registry],
    aggregator: 'min',
    async collect() {
      this.set(
        await within(sql`select 1`, probeTimeoutMs, 'database probe').then(
          () => 1,
          () => 0
        )
      )
    }
  })
}

/**
 * `/metrics` on METRICS_HOST:METRICS_PORT, and nothing else there: a port neither the proxy nor the
 * public reaches. A port already taken is logged and the replica goes on serving the API: losing its
 * figures is not worth an outage (and two replicas on one host with the same environment both run).
 */
export async function serveMetrics(
  text: () => Promise<string>,
  { host, port }: { host: string; port: number },
  log: Logger
): Promise<Server | undefined> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"error":"not-found","message":"only /metrics here"}')
      return
    }
    text().then(
      (body) => res.writeHead(200, { 'content-type': Registry.PROMETHEUS_CONTENT_TYPE }).end(body),
      (error: Error) => {
        log.warn({ err: error.message }, 'could not gather the metrics')
        res
          .writeHead(503, { 'content-type': 'application/json' })
          .end('{"error":"unavailable","message":"metrics not gathered"}')
      }
    )
  })
  server.keepAliveTimeout = 65_000 // longer than any scrape interval: one connection per scraper
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (error) {
    log.error(
      { err: (error as Error).message, host, port },
      'metrics port unavailable: this process serves no /metrics'
    )
    return undefined
  }
  server.unref()
  log.info({ host, port }, 'metrics on their own port')
  return server
}

function askPrimary(): Promise<string> {
  const id = randomUUID()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.off('message', onMessage)
      reject(new Error('the cluster primary did not send the metrics in time'))
    }, askTimeoutMs)
    const onMessage = (message: { type?: string; id?: string; text?: string; error?: string }) => {
      if (message?.type !== response || message.id !== id) return
      clearTimeout(timer)
      process.off('message', onMessage)
      if (message.error) reject(new Error(message.error))
      else resolve(message.text ?? '')
    }
    process.on('message', onMessage)
    process.send!({ type: request, id })
  })
}

/**
 * In the cluster primary: the sum over all workers, answered to a worker's `/metrics` (or served on
 * METRICS_PORT by the caller). prom-client omits `process_start_time_seconds` from the sum (a sum of
 * start times means nothing): the primary's own start, which is the cluster's, stands for it.
 */
export function serveClusterMetrics(): () => Promise<string> {
  const aggregator = new AggregatorRegistry()
  const own = new Registry()
  const startedAt = Math.round(Date.now() / 1000 - process.uptime())
  new Gauge({
    name: 'process_start_time_seconds',
    help: 'Start time of the cluster primary since unix epoch in seconds.',
    registers: [own],
    collect() {
      this.set(startedAt)
    }
  })
  const gather = async () => `${await aggregator.clusterMetrics()}\n${await own.metrics()}`
  cluster.on('message', (worker, message: { type?: string; id?: string }) => {
    if (message?.type !== request) return
    gather().then(
      (text) => worker.send({ type: response, id: message.id, text }),
      (error: Error) => worker.send({ type: response, id: message.id, error: error.message })
    )
  })
  return gather
}
