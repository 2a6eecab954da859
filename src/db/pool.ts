import postgres from 'postgres'

export type Sql = postgres.Sql
/** The pool, or a transaction of it: what a query function runs on. */
export type Queryable = Sql | postgres.TransactionSql

export interface PoolOptions {
  max?: number
  /** Seconds to wait for a connection before the query fails (so a dead database answers fast). */
  connectTimeout?: number
  /**
   * PostgreSQL's statement_timeout and idle_in_transaction_session_timeout, in ms: no request waits on
   * the database (a row lock held elsewhere included) longer than this; 0 for none.
   */
  statementTimeoutMs?: number
  /** PostgreSQL's lock_timeout, in ms (0 for none): how long a statement waits for a row lock. */
  lockTimeoutMs?: number
}

/** One pool per process. Timestamps come back in UTC; statements are prepared once per connection. */
export function createSql(
  url: string,
  { max = 10, connectTimeout = 3, statementTimeoutMs = 0, lockTimeoutMs = 0 }: PoolOptions = {}
): Sql {
  const sql = postgres(url, {
    max,
    connect_timeout: connectTimeout,
    // postgres.js waits up to 20 s between attempts to reconnect, growing with every failure: queries
    // queued meanwhile sat out their whole deadline while the database was down, and for seconds
    // after it was back. A short, capped wait answers them fast either way.
    backoff: (attempt: number) => Math.min(0.05 * 2 ** attempt, 0.5),
    idle_timeout: 60,
    prepare: true,
    onnotice: () => {},
    connection: {
      application_name: 'tandem',
      TimeZone: 'UTC',
      statement_timeout: statementTimeoutMs,
      lock_timeout: lockTimeoutMs,
      idle_in_transaction_session_timeout: statementTimeoutMs
    }
  })
  return statementTimeoutMs > 0 ? withDeadline(sql, statementTimeoutMs) : sql
}

interface Armed {
  /** Dropped once the query settles: an answered query (and its rows) must not outlive its request. */
  query: Cancellable | undefined
  sentAt: number
}

type Cancellable = { canceller?: ((query: unknown) => Promise<unknown> | undefined) | null }

const sweepEveryMs = 100

/**
 * statement_timeout starts when PostgreSQL receives the statement; a query can wait longer than that
 * for a pooled connection (every connection held by requests waiting on one locked row). Each query
 * made with the template tag is cancelled once `deadlineMs` has passed since it was sent for, whether it
 * is still queued for a connection (it never ran) or running (PostgreSQL rolls it back): either way it
 * fails with 57014, which answers 503, and nothing is written. Transactions (`sql.begin`) and
 * fragments nested in a query (never handed to the pool themselves) are left as they are. One sweep
 * every 100 ms instead of a timer per query: queries are kept in the order they were sent, so it
 * looks only at the oldest.
 */
function withDeadline(sql: Sql, deadlineMs: number): Sql {
  const stats: QueryStats = { inFlight: 0, observe: undefined }
  let armed: Armed[] = []
  let head = 0
  let sweeper: NodeJS.Timeout | undefined

  function oldestWaitMs() {
    while (head < armed.length && !armed[head].query) head++
    return head < armed.length ? performance.now() - armed[head].sentAt : 0
  }

  function sweep() {
    const oldest = performance.now() - deadlineMs
    for (; head < armed.length && (!armed[head].query || armed[head].sentAt <= oldest); head++) {
      const query = armed[head].query
      if (query) cancel(query)
    }
    if (head === armed.length) {
      armed = []
      head = 0
      clearInterval(sweeper)
      sweeper = undefined
    } else if (head > 1024 && head * 2 > armed.length) {
      armed = armed.slice(head)
      head = 0
    }
  }

  function arm(query: Cancellable) {
    const entry: Armed = { query, sentAt: performance.now() }
    armed.push(entry)
    sweeper ??= setInterval(sweep, sweepEveryMs).unref()
    return entry
  }

  // A plain function with the pool's helpers copied over, not a Proxy: a Proxy in front of every query
  // cost a third of the p99 of the Rinha routes.
  const deadlined = (strings: unknown, ...args: unknown[]) => {
    const query = (sql as unknown as (...all: unknown[]) => Record<string, unknown>)(strings, ...args)
    if (!Array.isArray((strings as { raw?: unknown } | undefined)?.raw) || typeof query.handler !== 'function')
      return query
    // The clock starts when the query is handed to the pool (it runs when first awaited, not when
    // built). Only the values of fields every query has are replaced: a property added to a query
    // would change its shape and slow postgres.js down for all of them.
    const { handler, resolve, reject } = query as Record<string, (value: unknown) => unknown>
    let entry: Armed | undefined
    query.handler = (self: unknown) => {
      entry = arm(query as Cancellable)
      stats.inFlight++
      return handler(self)
    }
    query.resolve = (value: unknown) => {
      if (entry) settle(entry, 'ok')
      return resolve(value)
    }
    query.reject = (reason: unknown) => {
      if (entry) settle(entry, sqlState(reason) === '57014' ? 'timeout' : 'error')
      return reject(reason)
    }
    return query
  }
  function settle(entry: Armed, outcome: QueryOutcome) {
    entry.query = undefined
    stats.inFlight--
    stats.observe?.((performance.now() - entry.sentAt) / 1000, outcome)
  }

  const wrapped = Object.assign(deadlined, sql) as unknown as Sql
  waits.set(wrapped, oldestWaitMs)
  statistics.set(wrapped, stats)
  return wrapped
}

const waits = new WeakMap<Sql, () => number>()

export type QueryOutcome = 'ok' | 'error' | 'timeout'

/** What a pool made with a deadline knows of its queries, for the metrics. */
export interface QueryStats {
  /** Queries handed to the pool and not yet answered: running, or waiting for a connection. */
  inFlight: number
  /** Called as each query settles, with the seconds since it was handed to the pool. */
  observe: ((seconds: number, outcome: QueryOutcome) => void) | undefined
}

const statistics = new WeakMap<Sql, QueryStats>()

/** The query statistics of a pool made with a deadline (undefined for one without). */
export const queryStats = (sql: Sql): QueryStats | undefined => statistics.get(sql)

/**
 * How long the oldest query not yet answered has waited, in ms (0 when none, or for a pool made
 * without a deadline): the database's queueing delay as this process sees it, for load shedding.
 */
export const oldestQueryWaitMs = (sql: Sql): number => waits.get(sql)?.() ?? 0

/**
 * query.cancel() drops the promise of the cancel request it sends; should that request fail (the
 * database just went away), its rejection would be unhandled and end the process. The canceller is
 * called here instead, and its failure ignored: the query then fails by itself.
 */
function cancel(query: Cancellable) {
  const canceller = query.canceller
  query.canceller = null
  canceller?.(query)?.catch(() => {})
}

/** The SQLSTATE of a PostgreSQL error ('' for anything else). */
export const sqlState = (error: unknown): string => (error as { code?: unknown } | undefined)?.code?.toString() ?? ''

/**
 * Errors caused by the data of the statement, not by the database's state: data exceptions (class
 * 22), integrity violations (class 23) and one row affected twice by an upsert (21000). In a batch,
 * such an error is one member's fault and must not fail the others.
 */
export function isClientDataError(error: unknown): boolean {
  const state = sqlState(error)
  return state.startsWith('22') || state.startsWith('23') || state === '21000'
}

/** The statement ran past its deadline (statement_timeout), or gave up waiting for a lock. */
export function isTimeout(error: unknown): boolean {
  const state = sqlState(error)
  return state === '57014' || state === '55P03' || state === '25P03'
}

/** Errors that mean "the database is not there right now" rather than "this request is wrong". */
export function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const code = sqlState(error)
  return (
    isTimeout(error) ||
    [
      'ECONNREFUSED',
      'ECONNRESET',
      'ETIMEDOUT',
      'EPIPE',
      'ENOTFOUND',
      'EAI_AGAIN',
      'CONNECT_TIMEOUT',
      'CONNECTION_CLOSED',
      'CONNECTION_ENDED',
      'CONNECTION_DESTROYED'
    ].includes(code) ||
    code.startsWith('08') || // connection exception
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' || // admin/crash shutdown, cannot connect now
    code === '53300' // too many connections
  )
}
