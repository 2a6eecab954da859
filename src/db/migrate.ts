import { readdir, readFile } from 'node:fs/promises'
import type { Sql } from './pool.js'
import type { Logger } from '../platform/logger.js'

const migrationsDir = new URL('./migrations/', import.meta.url)

/**
 * Applies the numbered SQL files not yet recorded, all in one transaction under an advisory lock:
 * replicas starting together queue on the lock, and the later ones find nothing left to do.
 */
export async function migrate(sql: Sql, log: Logger): Promise<string[]> {
  const files = (await readdir(migrationsDir)).filter((name) => /^\d{3}_[\w-]+\.sql$/.test(name)).sort()
  return sql.begin(async (tx) => {
    // Replicas wait on the lock for each other, and a migration may build a large index: neither is a
    // request, so the pool's statement deadline does not apply here.
    await tx`set local statement_timeout = 0`
    await tx`set local idle_in_transaction_session_timeout = 0`
    await tx`set local lock_timeout = 0`
    await tx`select pg_advisory_xact_lock(hashtext('tandem:migrations'))`
    await tx`create table if not exists schema_migrations (
      name text primary key,
      applied_at timestamptz not null default now()
    )`
    const done = new Set((await tx<{ name: string }[]>`select name from schema_migrations`).map((row) => row.name))
    const applied: string[] = []
    for (const name of files.filter((file) => !done.has(file))) {
      await tx.unsafe(await readFile(new URL(name, migrationsDir), 'utf8'))
      await tx`insert into schema_migrations (name) values (${name})`
      applied.push(name)
      log.info({ migration: name }, 'migration applied')
    }
    return applied
  })
}
