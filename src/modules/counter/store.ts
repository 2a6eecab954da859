import type { Sql } from '../../db/pool.js'
import type { Redis } from '../../db/redis.js'

/** Hands out the cluster's request numbers: distinct, consecutive, durable. */
export interface ClusterCounter {
  readonly backend: 'redis' | 'postgres'
  next(): Promise<number>
}

const counterName = 'requests'

export function redisCounter(redis: Redis): ClusterCounter {
  // INCR is atomic in Redis: every replica's request gets its own number.
  return { backend: 'redis', next: () => redis.incr(`tandem:counter:${counterName}`) }
}

interface Waiter {
  resolve(value: number): void
  reject(error: unknown): void
}

/**
 * Requests that arrive while a reservation is in flight wait for the next one, which reserves a
 * block of numbers for all of them in one durable commit: one statement per round trip, whatever
 * the load. The row lock orders the blocks of every replica, so numbers never overlap; a failed
 * commit reserves nothing, so no number is skipped.
 */
export function postgresCounter(sql: Sql, onReserve: (size: number) => void = () => {}): ClusterCounter {
  let waiting: Waiter[] = []
  let reserving = false

  async function reserve() {
    reserving = true
    while (waiting.length > 0) {
      const batch = waiting
      waiting = []
      onReserve(batch.length)
      try {
        const [row] = await sql<{ value: string }[]>`
          update counters set value = value + ${batch.length} where name = ${counterName} returning value`
        const first = Number(row.value) - batch.length + 1
        batch.forEach((waiter, index) => waiter.resolve(first + index))
      } catch (error) {
        for (const waiter of batch) waiter.reject(error)
      }
    }
    reserving = false
  }

  return {
    backend: 'postgres',
    next: () =>
      new Promise<number>((resolve, reject) => {
        waiting.push({ resolve, reject })
        if (!reserving) void reserve()
      })
  }
}
