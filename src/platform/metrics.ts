import cluster from 'node:cluster'
import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { AggregatorRegistry, collectDefaultMetrics, Histogram, Registry } from 'prom-client'

declare module 'fastify' {
  interface FastifyInstance {
    /** This process's Prometheus registry: modules add their business figures to it. */
    metrics: Registry
  }
}

const request = 'tandem:metrics-request'
const response = 'tandem:metrics-response'
const askTimeoutMs = 3000

/**
 * Per-route latency histograms, error counts (the status label), process figures, and whatever the
 * modules register. In the embedded cluster any worker's `/metrics` answers for all of them: it asks
 * the primary, which gathers every worker's registry.
 */
export const metricsPlugin = fp(async (app: FastifyInstance) => {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
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

  app.get('/metrics', { schema: { hide: true }, config: { exemptFromShedding: true } }, async (_req, reply) => {
    const text = cluster.isWorker ? await askPrimary() : await registry.metrics()
    return reply.type(registry.contentType).send(text)
  })
}, { name: 'metrics' })

function askPrimary(): Promise<string> {
  const id = randomUUID()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.off('message', onMessage)
      reject(new Error('the cluster primary did not send the metrics in time'))
    }, askTimeoutMs)
    const onMessage = (message: { type?: string, id?: string, text?: string, error?: string }) => {
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

/** In the cluster primary: answers a worker's `/metrics` with the sum over all workers. */
export function serveClusterMetrics() {
  const aggregator = new AggregatorRegistry()
  cluster.on('message', (worker, message: { type?: string, id?: string }) => {
    if (message?.type !== request) return
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: response, id: message.id, text }),
      (error: Error) => worker.send({ type: response, id: message.id, error: error.message })
    )
  })
}
