import { createHash } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type postgres from 'postgres'
import { Type } from 'typebox'
import { sqlState, type Sql } from '../db/pool.js'
import { Conflict, errorBody, HttpError, InvalidInput, Unavailable, Unprocessable } from './errors.js'

export const idempotencyHeader = 'idempotency-key'

/** The header as the OpenAPI document shows it on every route that takes it (`config: { idempotent: true }`). */
export const IdempotencyHeaders = Type.Object({
  [idempotencyHeader]: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[\\x21-\\x7e]+$',
      description:
        'Any 1–255 visible ASCII characters, new for each intended write (a UUID). A retry with the same key and ' +
        'the same request replays the first answer (`Idempotent-Replayed: true`) from any replica and applies nothing again; ' +
        'the same key with another request is 422 `idempotency-key-reused`; while the first is still in flight, 409 ' +
        '`idempotency-key-in-use`. Kept IDEMPOTENCY_TTL_MS (24 h by default).'
    })
  )
})

const validKey = /^[\x21-\x7e]{1,255}$/
const lockNotAvailable = '55P03'
const pruneEveryMs = 60_000
const pruneBatch = 10_000

export interface IdempotentWrite<T> {
  /** Whose keys these are (`crebitos:1`, `user:7`, `address:10.0.0.1`): two clients can neither collide nor read each other's answers. */
  scope: string
  /** The status of the write's answer when it succeeds (its refusals carry their own). */
  status: number
  /**
   * What the retry must repeat exactly to be a retry, besides method and path: the body unless a
   * field must stay out (a password is never stored, not even as a fast hash).
   */
  fingerprint?: unknown
  /** The write, in the transaction that records its answer; a 4xx it throws is its answer too. */
  write(tx: postgres.TransactionSql): Promise<T>
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Answers a write that came with an `Idempotency-Key` exactly once per key: the key is claimed,
     * the write applied and its answer recorded in one transaction, so a retry on any replica after
     * the commit replays the answer, and one after a crash before it finds nothing and applies it.
     * The answer is sent on `reply` (the handler returns `reply`); `replayed`: it was a retry's.
     */
    idempotent<T>(
      request: FastifyRequest,
      reply: FastifyReply,
      write: IdempotentWrite<T>
    ): Promise<{ replayed: boolean }>
  }
  interface FastifyContextConfig {
    /** The route takes an Idempotency-Key (documented in OpenAPI). */
    idempotent?: boolean
  }
}

interface Answer {
  status: number
  body: string
  replayed: boolean
}

export interface IdempotencyOptions {
  sql: Sql
  /** How long a key replays its answer (IDEMPOTENCY_TTL_MS). */
  ttlMs: number
  /** The longest a write waits for a pooled connection before a 503 (DATABASE_STATEMENT_TIMEOUT_MS). */
  connectionWaitMs: number
}

/** `app.idempotent(...)` for the modules' writes, and a background sweep of expired keys. */
export const idempotencyPlugin = fp(
  async (app: FastifyInstance, { sql, ttlMs, connectionWaitMs }: IdempotencyOptions) => {
    app.decorate('idempotent', async function <
      T
    >(request: FastifyRequest, reply: FastifyReply, write: IdempotentWrite<T>) {
      const key = request.headers[idempotencyHeader]
      if (typeof key !== 'string' || !validKey.test(key)) {
        throw new InvalidInput([`${idempotencyHeader}: must be 1 to 255 visible ASCII characters, given once`])
      }
      const query = request.url.indexOf('?')
      const path = query === -1 ? request.url : request.url.slice(0, query)
      const fingerprint = createHash('sha256')
        .update(`${request.method} ${path}\n`)
        .update(JSON.stringify(write.fingerprint ?? request.body ?? null))
        .digest()
      const answer = await inTransaction(sql, connectionWaitMs, (tx) =>
        answerOnce(tx, reply, { ...write, key, fingerprint, ttlMs })
      )
      if (answer.replayed) reply.header('idempotent-replayed', 'true')
      reply.code(answer.status).type('application/json; charset=utf-8').send(answer.body)
      return { replayed: answer.replayed }
    })

    // Every replica sweeps; the deletes are idempotent and each finds little left by the others.
    const timer = setInterval(() => {
      pruneExpiredKeys(sql).catch((error: Error) =>
        app.log.warn({ err: error.message }, 'could not prune the idempotency keys')
      )
    }, pruneEveryMs).unref()
    app.addHook('onClose', async () => clearInterval(timer))
  },
  { name: 'idempotency' }
)

/** Deletes keys past their expiry, a bounded batch at a time; answers how many. */
export async function pruneExpiredKeys(sql: Sql): Promise<number> {
  const deleted = await sql`
    delete from idempotency_keys where ctid = any(array(
      select ctid from idempotency_keys where expires_at < now() limit ${pruneBatch}))`
  return deleted.count
}

/**
 * `sql.begin`, with the wait for a pooled connection bounded like any other query's: a transaction
 * still waiting at the deadline is refused now, and its callback does nothing should it start later.
 */
async function inTransaction<T>(
  sql: Sql,
  waitMs: number,
  work: (tx: postgres.TransactionSql) => Promise<T>
): Promise<T> {
  let started = false
  let abandoned = false
  let timer: NodeJS.Timeout | undefined
  const refused = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      if (started) return
      abandoned = true
      reject(new Unavailable('the database did not answer in time, retry shortly'))
    }, waitMs)
  })
  const transaction = sql.begin(async (tx) => {
    if (abandoned) throw new Unavailable()
    started = true
    return work(tx)
  }) as Promise<T>
  try {
    return await Promise.race([transaction, refused])
  } finally {
    clearTimeout(timer)
    transaction.catch(() => {}) // abandoned: its own failure has no one left to tell
  }
}

async function answerOnce<T>(
  tx: postgres.TransactionSql,
  reply: FastifyReply,
  {
    scope,
    key,
    fingerprint,
    ttlMs,
    status,
    write
  }: IdempotentWrite<T> & { key: string; fingerprint: Buffer; ttlMs: number }
): Promise<Answer> {
  // A duplicate in flight has the row: this insert waits for its transaction (at most the pool's
  // lock_timeout), then finds the answer it committed, or the key free again if it rolled back.
  // An expired row is claimed afresh.
  let claimed: readonly unknown[]
  try {
    claimed = await tx`
      insert into idempotency_keys as k (scope, key, fingerprint, expires_at)
      values (${scope}, ${key}, ${fingerprint}, now() + make_interval(secs => ${ttlMs / 1000}))
      on conflict (scope, key) do update
         set fingerprint = excluded.fingerprint, status = null, body = null, created_at = now(), expires_at = excluded.expires_at
       where k.expires_at <= now()
      returning 1`
  } catch (error) {
    if (sqlState(error) === lockNotAvailable) {
      throw new Conflict(
        'idempotency-key-in-use',
        'a request with this Idempotency-Key is still in progress; retry shortly'
      )
    }
    throw error
  }
  if (claimed.length === 0) {
    const [first] = await tx<{ fingerprint: Buffer; status: number; body: string }[]>`
      select fingerprint, status, body from idempotency_keys where scope = ${scope} and key = ${key}`
    if (!first.fingerprint.equals(fingerprint)) {
      throw new Unprocessable(
        'idempotency-key-reused',
        'this Idempotency-Key was used for another request; use a new key for a new write'
      )
    }
    return { status: first.status, body: first.body, replayed: true }
  }

  let answer: Answer
  try {
    const result = await write(tx)
    // The route's own serializer for that status: the first answer is the very bytes a request
    // without the key would have had, and every replay repeats them.
    reply.code(status)
    answer = { status, body: String(reply.serialize(result)), replayed: false }
  } catch (error) {
    if (!isFinalRefusal(error)) throw error
    answer = {
      status: error.statusCode,
      body: JSON.stringify(errorBody(error.code, error.message, error.details)),
      replayed: false
    }
  }
  await tx`update idempotency_keys set status = ${answer.status}, body = ${answer.body} where scope = ${scope} and key = ${key}`
  return answer
}

/**
 * A refusal the write itself decided (unknown client, over the limit, taken, closed): the answer the
 * key replays. Not a 401, 429 or 5xx: those say nothing about the write, and a retry should try it.
 */
function isFinalRefusal(error: unknown): error is HttpError {
  return (
    error instanceof HttpError &&
    error.statusCode >= 400 &&
    error.statusCode < 500 &&
    error.statusCode !== 401 &&
    error.statusCode !== 429
  )
}
