import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type postgres from 'postgres'
import type { Queryable, Sql } from '../db/pool.js'
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

/** A limit of `perMinute` attempts under `key`, as the statements below count it. */
export interface Limit {
  key: string
  perMinute: number
}

/**
 * A GCRA admission (see 007_rate_limits.sql) to put in the WITH list of the caller's own statement,
 * so the decision costs no round trip of its own. `cte` is `admitted as (…)`; `allowed` says whether
 * the request may go on: while one more attempt would fit. When `charged` (an SQL boolean, which may
 * read the caller's earlier CTEs) is true it books one attempt: the upsert takes the key's row lock
 * and its WHERE re-checks the allowance on the newest row, so parallel attempts from every replica
 * are decided one after another and a burst cannot see an allowance that is already spent. When it
 * is false it books nothing and takes no lock, only asking "would this be refused?" of the committed
 * row, for requests that only a spent limit stops (lookups that find their sheet): they must not
 * queue behind a transaction that holds the key. The allowance is measured from the clock when the
 * lock is had, not from now(): statements queue on the lock in an order that need not be the order
 * they began in, and one that began first but is decided last would find the others' bookings ahead
 * of its older now() and be refused an attempt the limit still has. (now() only carries the charge
 * from the INSERT's row to the UPDATE, within one statement.) `allowed` and `waitSeconds` go in the
 * final SELECT.
 */
export function admission(sql: Queryable, { key, perMinute }: Limit, charged: postgres.Fragment) {
  const cost = periodSeconds / perMinute
  const spent = sql`busy_until + make_interval(secs => ${cost}) > clock_timestamp() + make_interval(secs => ${periodSeconds})`
  return {
    cte: sql`admitted as (
      insert into rate_limits as r (key, busy_until)
      select ${key}, now() + make_interval(secs => ${cost}) where ${charged}
      on conflict (key) do update set busy_until = greatest(r.busy_until, clock_timestamp()) + (excluded.busy_until - now())
       where greatest(r.busy_until, clock_timestamp()) + make_interval(secs => ${cost}) <= clock_timestamp() + make_interval(secs => ${periodSeconds})
      returning 1
    )`,
    allowed: sql`case when ${charged} then exists (select 1 from admitted)
                      else not exists (select 1 from rate_limits where key = ${key} and ${spent}) end`,
    // From the statement's snapshot: a refused request sees the row as it was when the statement began.
    waitSeconds: sql`(select extract(epoch from busy_until - clock_timestamp())::float8 from rate_limits where key = ${key}) + ${cost}::float8 - ${periodSeconds}::float8`
  }
}

/** The 429 for a request `admission` refused, given its `waitSeconds` and the limit's key (`login:…`). */
export function refused(waitSeconds: number | null, key: string): TooManyRequests {
  const seconds = Math.min(periodSeconds, Math.max(1, Math.ceil(waitSeconds ?? 1)))
  const end = key.indexOf(':')
  return new TooManyRequests(seconds, undefined, end === -1 ? key : key.slice(0, end))
}

/** One statement per attempt, every attempt charged. */
export async function bookAttempt(sql: Queryable, limit: Limit): Promise<void> {
  const { cte, allowed, waitSeconds } = admission(sql, limit, sql`true`)
  const [row] = await sql<{ allowed: boolean; waitSeconds: number | null }[]>`
    with ${cte} select ${allowed} as allowed, ${waitSeconds} as "waitSeconds"`
  if (!row.allowed) throw refused(row.waitSeconds, limit.key)
}

/** `app.rateLimit(key, perMinute)` for every module, and a sweep of the keys that ran out. */
export const rateLimitPlugin = fp(
  async (app: FastifyInstance, { sql }: { sql: Sql }) => {
    app.decorate('rateLimit', (key: string, perMinute: number) => bookAttempt(sql, { key, perMinute }))

    // Every replica sweeps; the deletes are idempotent and each finds little left by the others.
    const timer = setInterval(() => {
      sql`delete from rate_limits where busy_until < now()`.catch((error: Error) =>
        app.log.warn({ err: error.message }, 'could not prune the rate limits')
      )
    }, pruneEveryMs).unref()
    app.addHook('onClose', async () => clearInterval(timer))
  },
  { name: 'rate-limit' }
)
