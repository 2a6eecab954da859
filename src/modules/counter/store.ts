import type { Sql } from '../../db/pool.js'
import type { Redis } from '../../db/redis.js'
import { Coalescer } from '../../platform/coalescer.js'
import { Unavailable } from '../../platform/errors.js'

/** Hands out the cluster's request numbers: distinct, consecutive, durable. */
export interface ClusterCounter {
  readonly backend: 'redis' | 'postgres'
  next(): Promise<number>
}

const counterName = 'requests'

/** Adds `count` to the stored counter atomically and answers the new total. */
type Reserve = (count: number) => Promise<number>

export interface CounterLimits {
  /** Requests waiting for a reservation; beyond, a fast 503. */
  queueMax: number
  /** A request still waiting this long after it arrived gets a 503 (it reserved nothing). */
  deadlineMs: number
  onReserve?(size: number): void
  onRefuse?(reason: 'queue-full' | 'deadline'): void
}

export function redisCounter(redis: Redis, limits: CounterLimits): ClusterCounter {
  // INCRBY is atomic in Redis: every replica's block of numbers is its own.
  return blocks('redis', (count) => redis.incrby(`tandem:counter:${counterName}`, count), limits)
}

export function postgresCounter(sql: Sql, limits: CounterLimits): ClusterCounter {
  // The row lock orders the blocks of every replica; the commit is durable before anyone is answered.
  return blocks(
    'postgres',
    async (count) => {
      const [row] = await sql<{ value: string }[]>`
      update counters set value = value + ${count} where name = ${counterName} returning value`
      return Number(row.value)
    },
    limits
  )
}

interface Waiter {
  arrivedAt: number
  resolve(value: number): void
  reject(error: unknown): void
}

const sweepEveryMs = 100

/**
 * Requests that arrive while a reservation is in flight wait for the next one, which reserves a
 * block of numbers for all of them in one atomic step: one round trip to the store per batch,
 * whatever the load. Blocks never overlap, and a failed reservation adds nothing, so no number is
 * skipped.
 */
function blocks(backend: ClusterCounter['backend'], reserve: Reserve, limits: CounterLimits): ClusterCounter {
  const { queueMax, deadlineMs, onReserve = () => {}, onRefuse = () => {} } = limits
  let sweeper: NodeJS.Timeout | undefined
  const reservations = new Coalescer<Waiter>(
    async (batch) => {
      onReserve(batch.length)
      const first = (await reserve(batch.length)) - batch.length + 1
      batch.forEach((waiter, index) => waiter.resolve(first + index))
    },
    // The store failed or timed out: those who arrived meanwhile would only wait as long again.
    (batch, error) => {
      for (const waiter of [...batch, ...reservations.take()]) waiter.reject(error)
    }
  )

  // While a reservation hangs (a row lock held elsewhere, a slow store), those queued behind it are
  // refused once their deadline passes: nothing was reserved for them, so a retry loses no number.
  function sweep() {
    const oldest = Date.now() - deadlineMs
    for (const waiter of reservations.take((waiter) => waiter.arrivedAt <= oldest)) {
      onRefuse('deadline')
      waiter.reject(new Unavailable('the counter store did not answer in time, retry shortly'))
    }
    if (reservations.waiting.length === 0) {
      clearInterval(sweeper)
      sweeper = undefined
    }
  }

  return {
    backend,
    next: () =>
      new Promise<number>((resolve, reject) => {
        if (reservations.waiting.length >= queueMax) {
          onRefuse('queue-full')
          reject(new Unavailable('too many counter requests waiting, retry shortly'))
          return
        }
        reservations.add({ arrivedAt: Date.now(), resolve, reject })
        // Queued behind a reservation in flight (the first of a batch is sent at once).
        if (reservations.waiting.length > 0) sweeper ??= setInterval(sweep, sweepEveryMs).unref()
      })
  }
}
