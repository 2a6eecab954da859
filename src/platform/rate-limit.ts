import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Sql } from '../db/pool.js'
import { TooManyRequests } from './errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Books one attempt under `key` (e.g. `signin:<address>:<sheet>`), counted in PostgreSQL so the
     * limit holds across replicas: `perMinute` may come at once, then `perMinute` a minute.
     * Throws a 429 carrying Retry-After when the key is over its limit; a refused attempt books nothing.
     */
    rateLimit(key: string, perMinute: number): Promise<void>
  }
}

const periodSeconds = 60
const pruneEveryMs = 60_000

/**
 * One statement per attempt (see 007_rate_limits.sql for the GCRA): the upsert's row lock orders the
 * attempts of one key from every replica, and its WHERE re-checks the allowance on the newest row.
 */
async function bookAttempt(sql: Sql, key: string, perMinute: number): Promise<{ allowed: boolean, retryAfterSeconds: number }> {
  const cost = periodSeconds / perMinute
  const [row] = await sql<{ allowed: boolean, waitSeconds: number | null }[]>`
    with booked as (
      insert into rate_limits as r (key, busy_until)
      values (${key}, now() + make_interval(secs => ${cost}))
      on conflict (key) do update set busy_until = greatest(r.busy_until, now()) + make_interval(secs => ${cost})
       where greatest(r.busy_until, now()) + make_interval(secs => ${cost}) <= now() + make_interval(secs => ${periodSeconds})
      returning 1
    )
    select exists (select 1 from booked) as allowed,
           (select extract(epoch from busy_until - now())::float8 from rate_limits where key = ${key}) + ${cost} - ${periodSeconds} as "waitSeconds"`
  return { allowed: row.allowed, retryAfterSeconds: Math.min(periodSeconds, Math.max(1, Math.ceil(row.waitSeconds ?? 1))) }
}

/** `app.rateLimit(key, perMinute)` for every module, and a sweep of the keys that ran out. */
export const rateLimitPlugin = fp(async (app: FastifyInstance, { sql }: { sql: Sql }) => {
  app.decorate('rateLimit', async (key: string, perMinute: number) => {
    const { allowed, retryAfterSeconds } = await bookAttempt(sql, key, perMinute)
    if (!allowed) throw new TooManyRequests(retryAfterSeconds)
  })

  // Every replica sweeps; the deletes are idempotent and each finds little left by the others.
  const timer = setInterval(() => {
    sql`delete from rate_limits where busy_until < now()`.catch((error: Error) =>
      app.log.warn({ err: error.message }, 'could not prune the rate limits'))
  }, pruneEveryMs).unref()
  app.addHook('onClose', async () => clearInterval(timer))
}, { name: 'rate-limit' })
