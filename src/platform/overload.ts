import { monitorEventLoopDelay } from 'node:perf_hooks'
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
  config: Pick<Config, 'overloadEventLoopDelayMs' | 'overloadMaxInFlight' | 'overloadDatabaseWaitMs'>
  /** How long the oldest query not yet answered has waited, in ms. */
  databaseWaitMs: () => number
}

// How often the event-loop delay is read: short, so shedding starts and stops within a fraction of a second.
const sampleIntervalMs = 100
// How often the delay is sampled, in ms (monitorEventLoopDelay's resolution).
const resolution = 10

/**
 * Load shedding at the edge of the replica: past an event-loop delay, a number of requests in
 * progress, or a queueing delay at the database (the oldest query not yet answered has waited that
 * long: more work admitted would only wait longer), a new request is refused at once with 503 and Retry-After, before its body is read or the
 * database is asked, so the requests already admitted are answered within the latency objective
 * instead of everything queueing until clients time out and the balancer ejects the replica.
 * (@fastify/under-pressure measures the same delay; this is its one check, in the same synchronous
 * hook as the in-flight count, since every hook is paid by every request of the hottest routes.)
 */
export const overloadPlugin = fp(
  async (app: FastifyInstance, { config, databaseWaitMs }: OverloadOptions) => {
    const {
      overloadEventLoopDelayMs: maxDelayMs,
      overloadMaxInFlight: maxInFlight,
      overloadDatabaseWaitMs: maxWaitMs
    } = config
    if (maxDelayMs === 0 && maxInFlight === 0 && maxWaitMs === 0) return
    const refused = new Counter({
      name: 'tandem_overload_refused_total',
      help: 'Requests refused with 503 because this replica was overloaded, by the bound that was passed',
      labelNames: ['reason'],
      registers: [app.metrics]
    })

    let delayMs = 0
    if (maxDelayMs > 0) {
      const histogram = monitorEventLoopDelay({ resolution })
      histogram.enable()
      let resetAt = performance.now()
      const timer = setInterval(() => {
        const now = performance.now()
        // The resolution itself is not delay. No sample since the last reset: if this reading is
        // itself late the loop was stuck that long; if the reset was only moments ago (listen), no
        // sample is due yet, and that is no delay.
        delayMs =
          histogram.count > 0 ? histogram.mean / 1e6 - resolution : Math.max(0, now - resetAt - sampleIntervalMs)
        histogram.reset()
        resetAt = now
      }, sampleIntervalMs).unref()
      // What ran before the server listened (building and compiling the app) is start-up, not
      // overload: a fresh replica must not shed its first requests for it.
      app.addHook('onListen', (done) => {
        histogram.reset()
        resetAt = performance.now()
        delayMs = 0
        done()
      })
      app.addHook('onClose', async () => {
        clearInterval(timer)
        histogram.disable()
      })
    }

    let inFlight = 0
    const release = () => {
      inFlight--
    }
    app.addHook('onRequest', (request, reply, done) => {
      const { longLived, exemptFromShedding } = request.routeOptions.config
      if (!exemptFromShedding) {
        const reason =
          maxDelayMs > 0 && delayMs > maxDelayMs
            ? 'event-loop-delay'
            : maxInFlight > 0 && inFlight >= maxInFlight && !longLived
              ? 'in-flight'
              : maxWaitMs > 0 && databaseWaitMs() > maxWaitMs
                ? 'database-wait'
                : undefined
        if (reason) {
          refused.inc({ reason })
          done(new Unavailable('this replica is overloaded, retry shortly', 1, 'overloaded'))
          return
        }
      }
      if (!longLived) {
        inFlight++
        reply.raw.on('close', release)
      }
      done()
    })
  },
  { name: 'overload', dependencies: ['metrics'] }
)
