import type { Sql } from '../../db/pool.js'

interface Pending {
  key: string
  value: number
  arrivedAt: number
  resolve(total: number): void
  reject(error: unknown): void
}

export interface BatcherOptions {
  /** How long the first increment of a batch waits for company; 0: only those that arrive meanwhile. */
  windowMs: number
  onCommit?(size: number, keys: number): void
}

export interface IncrementBatcher {
  add(key: string, value: number): Promise<number>
  /** Milliseconds the oldest increment not yet committed has waited (0 when none). */
  lagMs(): number
}

const outOfRange = '23514'

/**
 * Increments that arrive together become one upsert, summed per key, committed durably before any
 * of them is answered: an acknowledged increment is in PostgreSQL, whatever dies next. The upsert
 * adds to the stored total under the row lock (never read-modify-write in the process), so any
 * number of replicas sum exactly; keys go in sorted order so two batches cannot deadlock.
 */
export function incrementBatcher(sql: Sql, { windowMs, onCommit }: BatcherOptions): IncrementBatcher {
  let pending: Pending[] = []
  let committing = false
  let timer: NodeJS.Timeout | undefined

  async function drain() {
    timer = undefined
    committing = true
    while (pending.length > 0) {
      const batch = pending
      pending = []
      await commit(batch)
    }
    committing = false
  }

  async function commit(batch: Pending[]) {
    try {
      const totals = await upsert(sql, batch)
      onCommit?.(batch.length, totals.size)
      // Each request gets the total right after its own increment: walk back from the batch's end.
      for (let index = batch.length - 1; index >= 0; index--) {
        const { key, value, resolve } = batch[index]
        const total = totals.get(key)!
        resolve(total)
        totals.set(key, total - value)
      }
    } catch (error) {
      // One key past the range must not fail the others: retry them one by one.
      if ((error as { code?: string }).code === outOfRange && batch.length > 1) {
        for (const single of batch) await commit([single])
        return
      }
      for (const { reject } of batch) reject(error)
    }
  }

  return {
    add(key, value) {
      return new Promise<number>((resolve, reject) => {
        pending.push({ key, value, arrivedAt: Date.now(), resolve, reject })
        if (committing || timer) return
        timer = setTimeout(() => void drain(), windowMs)
      })
    },
    lagMs: () => (pending.length > 0 ? Date.now() - pending[0].arrivedAt : 0)
  }
}

async function upsert(sql: Sql, batch: Pending[]): Promise<Map<string, number>> {
  const sums = new Map<string, number>()
  for (const { key, value } of batch) sums.set(key, (sums.get(key) ?? 0) + value)
  const keys = [...sums.keys()].sort()
  const rows = await sql<{ key: string, value: string }[]>`
    insert into increments as i (key, value)
    select key, value from unnest(${sql.array(keys)}::text[], ${sql.array(keys.map((key) => String(sums.get(key))))}::bigint[]) as t (key, value)
     order by key
    on conflict (key) do update set value = i.value + excluded.value, updated_at = now()
    returning key, value`
  return new Map(rows.map((row) => [row.key, Number(row.value)]))
}
