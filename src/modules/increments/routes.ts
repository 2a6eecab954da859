import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram } from 'prom-client'
import type { Config } from '../../config.js'
import type { Sql } from '../../db/pool.js'
import { ErrorBody, NotFound } from '../../platform/errors.js'
import { idempotencyHeader } from '../../platform/idempotency.js'
import { incrementBatcher } from './batcher.js'
import { addToKey } from './queries.js'
import { IncrementResult, KeyParams, KeyState, NewIncrement } from './schema.js'

export interface IncrementsOptions {
  sql: Sql
  config: Pick<Config, 'incrementBatchWindowMs' | 'incrementQueueMax' | 'incrementMaxLagMs' | 'databaseLockTimeoutMs'>
}

/** Shared counters by key: exact sums from any number of replicas, durable before acknowledged. */
const routes: FastifyPluginAsyncTypebox<IncrementsOptions> = async (app, { sql, config }) => {
  const perCommit = new Histogram({
    name: 'tandem_increments_per_commit',
    help: 'Increments committed together in one PostgreSQL transaction (the batching factor)',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [app.metrics]
  })
  const committed = new Counter({
    name: 'tandem_increments_committed_total',
    help: 'Increments committed to PostgreSQL',
    registers: [app.metrics]
  })
  const refused = new Counter({
    name: 'tandem_increments_refused_total',
    help: 'Increments answered 503 and not written: the queue was full, or they could not be committed in time',
    labelNames: ['reason'],
    registers: [app.metrics]
  })
  // Both series exist from the start, so an alert on their rate sees 0 rather than nothing.
  for (const reason of ['queue-full', 'deadline']) refused.inc({ reason }, 0)
  const batcher = incrementBatcher(sql, {
    windowMs: config.incrementBatchWindowMs,
    queueMax: config.incrementQueueMax,
    maxLagMs: config.incrementMaxLagMs,
    lockTimeoutMs: config.databaseLockTimeoutMs,
    onCommit: (size) => {
      perCommit.observe(size)
      committed.inc(size)
    },
    onRefuse: (reason, count) => refused.inc({ reason }, count)
  })
  new Gauge({
    name: 'tandem_increments_queued',
    help: 'Increments of this process waiting for their commit or in flight (capped by INCREMENT_QUEUE_MAX)',
    registers: [app.metrics],
    collect() {
      this.set(batcher.size())
    }
  })
  // The contract bounds how far PostgreSQL may trail acknowledged increments; here it trails only
  // the ones not yet acknowledged, and this is how long the oldest of them has waited.
  new Gauge({
    name: 'tandem_increments_persist_lag_seconds',
    help: 'Age of the oldest increment of this process not yet committed',
    registers: [app.metrics],
    aggregator: 'max', // in the embedded cluster: the oldest over all workers
    collect() {
      this.set(batcher.lagMs() / 1000)
    }
  })

  new Gauge({
    name: 'tandem_increments_max_lag_seconds',
    help: 'INCREMENT_MAX_LAG_MS in seconds: the most tandem_increments_persist_lag_seconds may reach',
    registers: [app.metrics],
    aggregator: 'max',
    collect() {
      this.set(config.incrementMaxLagMs / 1000)
    }
  })

  // /api/increment: the path of the original increments service, so its existing clients work unchanged.
  for (const path of ['/increment', '/api/increment']) {
    app.post(
      path,
      {
        config: { auth: 'required', idempotent: true }, // checked before the body is even read: no session, 401
        schema: {
          tags: ['increments'],
          summary:
            path === '/increment'
              ? 'Add to a key; answers its new total once committed'
              : 'The same as POST /increment',
          body: NewIncrement,
          response: { 200: IncrementResult, 409: ErrorBody }
        }
      },
      async (request, reply) => {
        const { key, value } = request.body
        if (request.headers[idempotencyHeader] === undefined) return { key, value: await batcher.add(key, value) }
        // With a key, the increment and its answer commit together, outside the shared batches.
        const { replayed } = await app.idempotent(request, reply, {
          scope: `user:${request.caller.id}`,
          status: 200,
          write: async (tx) => ({ key, value: await addToKey(tx, key, value) })
        })
        if (!replayed) {
          perCommit.observe(1)
          committed.inc()
        }
        return reply
      }
    )
  }

  app.get(
    '/increment/:key',
    {
      schema: {
        tags: ['increments'],
        summary: "A key's total and when it was stored",
        params: KeyParams,
        response: { 200: KeyState, 404: ErrorBody }
      }
    },
    async (request) => {
      const [row] = await sql<{ value: string; updatedAt: Date }[]>`
      select value, updated_at as "updatedAt" from increments where key = ${request.params.key}`
      if (!row) throw new NotFound('key')
      const value = Number(row.value)
      return { key: request.params.key, value, persistedValue: value, persistedAt: row.updatedAt.toISOString() }
    }
  )
}

/**
 * Encapsulated (its hooks and decorators stay its own), and named with the platform plugins it needs:
 * Fastify refuses to start when one is missing or comes after it, rather than app.ts's line order
 * deciding silently (the error and session hooks, and the OpenAPI document, must see its routes).
 */
export const incrementsRoutes = fp(routes, {
  name: 'increments',
  dependencies: ['errors', 'docs', 'metrics', 'auth', 'idempotency'],
  encapsulate: true
})
