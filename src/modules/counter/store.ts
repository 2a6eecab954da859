import type { Sql } from '../../db/pool.js'
import type { Redis } from '../../db/redis.js'

/** Hands out the cluster's request numbers: distinct, consecutive, durable. */
export interface ClusterCounter {
  readonly backend: 'redis' | 'postgres'
  next(): Promise<number>
}

const counterName = 'requests'

/** Adds `count` to the stored counter atomically and answers the new total. */
type Reserve = (count: number) => Promise<number>

export function redisCounter(redis: Redis, onReserve?: (size: number) => void): ClusterCounter {
  // INCRBY is atomic in Redis: every replica's block of numbers is its own.
  return blocks('redis', (count) => redis.incrby(`tandem:counter:${counterName}`, count), onReserve)
}

export function postgresCounter(sql: Sql, onReserve?: (size: number) => void): ClusterCounter {
  // The row lock orders the blocks of every replica; the commit is durable before anyone is answered.
  return blocks('postgres', async (count) => {
    const [row] = await sql<{ value: string }[]>`
      update counters set value = value + ${count} where name = ${counterName} returning value`
    return Number(row.value)
  }, onReserve)
}

interface Waiter {
  resolve(value: number): void
  reject(error: unknown): void
}

/**
 * Requests that arrive while a reservation is in flight wait for the next one, which reserves a
 * block of numbers for all of them in one atomic step: one round trip to the store per batch,
 * whatever the load. Blocks never overlap, and a failed reservation adds nothing, so no number is
 * skipped.
 */
function blocks(backend: ClusterCounter['backend'], reserve: Reserve, onReserve: (size: number) => void = () => {}): ClusterCounter {
  let waiting: Waiter[] = []
  let reserving = false

  async function drain() {
    reserving = true
    while (waiting.length > 0) {
      const batch = waiting
      waiting = []
      onReserve(batch.length)
      try {
        const first = (await reserve(batch.length)) - batch.length + 1
        batch.forEach((waiter, index) => waiter.resolve(first + index))
      } catch (error) {
        for (const waiter of batch) waiter.reject(error)
      }
    }
    reserving = false
  }

  return {
    backend,
    next: () =>
      new Promise<number>((resolve, reject) => {
        waiting.push({ resolve, reject })
        if (!reserving) void drain()
      })
  }
}
