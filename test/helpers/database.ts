import { randomBytes } from 'node:crypto'
import postgres from 'postgres'
import { migrate } from '../../src/db/migrate.js'
import { createSql, type Sql } from '../../src/db/pool.js'
import { createLogger } from '../../src/platform/logger.js'

export const quietLog = createLogger({ production: true, logLevel: 'silent' })

export function adminUrl(): string {
  const url = process.env.TANDEM_TEST_ADMIN_URL ?? process.env.DATABASE_URL
  if (!url)
    throw new Error('run the tests with `npm test` (or set DATABASE_URL to a PostgreSQL you can create databases on)')
  return url
}

export interface TestDatabase {
  url: string
  sql: Sql
  /**
   * Runs `statement` (e.g. a `select … for update`) in a session of its own, without the pool's
   * deadlines, and holds what it locked until the returned `release` is called.
   */
  holdLock(statement: (tx: postgres.TransactionSql) => Promise<unknown>): Promise<() => Promise<void>>
  drop(): Promise<void>
}

/**
 * A fresh, empty database of this test's own on the test server; `migrated` applies our schema;
 * `statementTimeoutMs` and `lockTimeoutMs` give its pool the deadlines a served replica has
 * (DATABASE_STATEMENT_TIMEOUT_MS, DATABASE_LOCK_TIMEOUT_MS).
 */
export async function createDatabase({
  migrated = false,
  statementTimeoutMs = 0,
  lockTimeoutMs = 0
} = {}): Promise<TestDatabase> {
  const name = `tandem_test_${randomBytes(6).toString('hex')}`
  const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  const url = new URL(adminUrl())
  url.pathname = `/${name}`
  const sql = createSql(url.toString(), { max: 10, statementTimeoutMs, lockTimeoutMs })
  if (migrated) await migrate(sql, quietLog)
  return {
    url: url.toString(),
    sql,
    async holdLock(statement) {
      const holder = postgres(url.toString(), { max: 1, onnotice: () => {} })
      let release!: () => void
      const released = new Promise<void>((resolve) => {
        release = resolve
      })
      let locked!: () => void
      const holding = new Promise<void>((resolve) => {
        locked = resolve
      })
      const done = holder
        .begin(async (tx) => {
          await statement(tx)
          locked()
          await released
        })
        .finally(() => holder.end({ timeout: 1 }))
      await holding
      return async () => {
        release()
        await done
      }
    },
    async drop() {
      await sql.end({ timeout: 5 })
      await admin.unsafe(`drop database if exists ${name} with (force)`)
      await admin.end({ timeout: 5 })
    }
  }
}
