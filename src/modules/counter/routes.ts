import { hostname } from 'node:os'
import type { AddressInfo } from 'node:net'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import fp from 'fastify-plugin'
import { Counter, Histogram } from 'prom-client'
import { Type } from 'typebox'
import type { Config } from '../../config.js'
import type { Sql } from '../../db/pool.js'
import type { Redis } from '../../db/redis.js'
import { postgresCounter, redisCounter } from './store.js'

const CounterReply = Type.Object({
  instance: Type.String({ description: '<host>:<port>#<worker>' }),
  instanceRequests: Type.Integer({ description: 'counter requests served by this process since it started' }),
  clusterRequests: Type.Integer({ description: 'counter requests served by every replica, ever' })
})

export interface CounterOptions {
  sql: Sql
  config: Pick<Config, 'counterQueueMax' | 'databaseStatementTimeoutMs'>
  /** With Redis the count lives there (INCRBY blocks); without, in PostgreSQL. */
  redis?: Redis
  /** The worker number in the embedded cluster; 0 for a standalone replica. */
  worker: number
}

/** Shows the balancer at work: who answered, and how many requests it and the cluster served. */
const routes: FastifyPluginAsyncTypebox<CounterOptions> = async (app, { sql, config, redis, worker }) => {
  const reserved = new Histogram({
    name: 'tandem_cluster_requests_reservation_size',
    help: 'Counter numbers reserved per round trip to the store (the batching factor)',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
    registers: [app.metrics]
  })
  const refused = new Counter({
    name: 'tandem_cluster_requests_refused_total',
    help: 'Counter requests refused with 503 before any number was reserved for them, by reason',
    labelNames: ['reason'],
    registers: [app.metrics]
  })
  const limits = {
    queueMax: config.counterQueueMax,
    deadlineMs: config.databaseStatementTimeoutMs,
    onReserve: (size: number) => reserved.observe(size),
    onRefuse: (reason: string) => refused.inc({ reason })
  }
  const counter = redis ? redisCounter(redis, limits) : postgresCounter(sql, limits)
  let served = 0
  const answered = new Counter({
    name: 'tandem_cluster_requests_total',
    help: 'Counter requests answered by this process',
    labelNames: ['backend'],
    registers: [app.metrics]
  })
  let instance: string | undefined
  const whoAmI = () => (instance ??= `${hostname()}:${(app.server.address() as AddressInfo).port}#${worker}`)

  app.get(
    '/counter',
    {
      schema: {
        tags: ['counter'],
        summary: 'Requests served by this instance and by the whole cluster',
        description: 'Send `Accept: text/plain` for one line of text.',
        response: {
          200: {
            description: 'who answered, and the counts',
            content: {
              'application/json': { schema: CounterReply },
              'text/plain': { schema: Type.String() }
            }
          }
        }
      }
    },
    async (request, reply) => {
      const clusterRequests = await counter.next()
      const instanceRequests = ++served
      answered.inc({ backend: counter.backend })
      const body = { instance: whoAmI(), instanceRequests, clusterRequests }
      if (prefersText(request.headers.accept)) {
        return reply
          .type('text/plain; charset=utf-8')
          .send(
            `You are talking to instance ${body.instance}. This is request ${instanceRequests} to this instance and request ${clusterRequests} to the cluster.\n`
          )
      }
      return body
    }
  )
}

function prefersText(accept: string | undefined): boolean {
  return !!accept && accept.includes('text/plain') && !accept.includes('application/json')
}

/**
 * Encapsulated (its hooks and decorators stay its own), and named with the platform plugins it needs:
 * Fastify refuses to start when one is missing or comes after it, rather than app.ts's line order
 * deciding silently (the error and session hooks, and the OpenAPI document, must see its routes).
 */
export const counterRoutes = fp(routes, {
  name: 'counter',
  dependencies: ['errors', 'docs', 'metrics'],
  encapsulate: true
})
