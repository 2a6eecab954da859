import { readdir, readFile } from 'node:fs/promises'
import type { Sql } from './pool.js'
import type { Logger } from '../platform/logger.js'

const source = new URL('../', import.meta.url)
const migrationName = /^\d{3}_[\w-]+\.sql$/

export interface Migration {
  /** `003_accounts.sql`: what schema_migrations records; the number orders them across folders. */
  name: string
  url: URL
}

/**
 * Every migration: the platform's tables in db/migrations, and each module's beside its code in
 * modules/<name>/migrations (a module owns its tables). Numbers are unique over all of them.
 */
export async function migrations(): Promise<Migration[]> {
  const modules = (await readdir(new URL('modules/', source), { withFileTypes: true })).filter((entry) =>
    entry.isDirectory()
  )
  const folders = [
    new URL('db/migrations/', source),
    ...modules.map((entry) => new URL(`modules/${entry.name}/migrations/`, source))
  ]
  const found = await Promise.all(
    folders.map(async (folder) => {
      const names = await readdir(folder).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return []
        throw error
      })
      return names.filter((name) => migrationName.test(name)).map((name) => ({ name, url: new URL(name, folder) }))
    })
  )
  const all = found.flat().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  const numbers = all.map((migration) => migration.name.slice(0, 3))
  const twice = numbers.find((number, index) => numbers.indexOf(number) !== index)
  if (twice) throw new Error(`two migrations are numbered ${twice}: each number orders one migration over every folder`)
  return all
}

/**
 * Applies the numbered SQL files not yet recorded, all in one transaction under an advisory lock:
 * replicas starting together queue on the lock, and the later ones find nothing left to do.
 */
export async function migrate(sql: Sql, log: Logger): Promise<string[]> {
  const files = await migrations()
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
    for (const { name, url } of files.filter((file) => !done.has(file.name))) {
      await tx.unsafe(await readFile(url, 'utf8'))
      await tx`insert into schema_migrations (name) values (${name})`
      applied.push(name)
      log.info({ migration: name }, 'migration applied')
    }
    return applied
  })
}
