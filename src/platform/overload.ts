import underPressure from '@fastify/under-pressure'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Counter } from 'prom-client'
import type { Config } from '../config.js'
import { Unavailable } from './errors.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A stream or download that stays open for minutes: not counted as in-flight work. */
    longLived?: boolean
    /** Answered even when the replica sheds load (health probes, metrics). */
    exemptFromShedding?: boolean
  }
}

export interface OverloadOptions {
  config: Pick<Config, 'overloadEventLoopDelayMs' | 'overloadMaxInFlight'>
}

// How often the event-loop delay is sampled: short, so shedding starts and stops within a fraction of a second.
const sampleIntervalMs = 100

/**
 * Load shedding at the edge of the replica: past an event-loop delay or a number of requests in
 * progress, a new request is refused at once with 503 and Retry-After, before it touches the
 * database, so the requests already admitted are answered within the latency objective instead of
 * everything queueing until clients time out and the balancer ejects the replica.
 */
export const overloadPlugin = fp(async (app: FastifyInstance, { config }: OverloadOptions) => {
  const refused = new Counter({
    name: 'tandem_overload_refused_total',
    help: 'Requests refused with 503 because this replica was overloaded, by the bound that was passed',
    labelNames: ['reason'],
    registers: [app.metrics]
  })
  const refuse = (reason: 'event-loop-delay' | 'in-flight') => {
    refused.inc({ reason })
    return new Unavailable('this replica is overloaded, retry shortly', 1, 'overloaded')
  }

  let inFlight = 0
  app.addHook('onRequest', async (request, reply) => {
    const { longLived, exemptFromShedding } = request.routeOptions.config
    if (longLived) return
    if (config.overloadMaxInFlight > 0 && inFlight >= config.overloadMaxInFlight && !exemptFromShedding) throw refuse('in-flight')
    inFlight++
    reply.raw.once('close', () => { inFlight-- })
  })

  if (config.overloadEventLoopDelayMs > 0) {
    await app.register(underPressure, {
      maxEventLoopDelay: config.overloadEventLoopDelayMs,
      sampleInterval: sampleIntervalMs,
      pressureHandler: async (request) => {
        if (!request.routeOptions.config.exemptFromShedding) throw refuse('event-loop-delay')
      }
    })
  }
}, { name: 'overload', dependencies: ['metrics'] })
