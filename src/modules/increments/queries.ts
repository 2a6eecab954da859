import type { Queryable } from '../../db/pool.js'

/**
 * One increment on its own, in the caller's transaction: the write of a request that came with an
 * Idempotency-Key, whose answer must be recorded in the same transaction, so it cannot join a batch
 * committed by others. The key's new total, added under the row lock like the batches do.
 */
export async function addToKey(db: Queryable, key: string, value: number): Promise<number> {
  const [row] = await db<{ value: string }[]>`
    insert into increments as i (key, value) values (${key}, ${value})
    on conflict (key) do update set value = i.value + excluded.value, updated_at = now()
    returning value`
  return Number(row.value)
}
