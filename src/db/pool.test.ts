import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import postgres from 'postgres'
import { adminUrl, createDatabase, type TestDatabase } from '../../test/helpers/database.js'
import { until } from '../../test/helpers/wait.js'
import { createSql, type Sql } from './pool.js'

let db: TestDatabase
let admin: postgres.Sql

before(async () => {
  db = await createDatabase()
  admin = postgres(adminUrl(), { max: 1, onnotice: () => {} })
})

after(async () => {
  await admin.end({ timeout: 5 })
  await db.drop()
})

/** Terminates the pool's one backend (as a fast shutdown or a failover does) while it runs a statement. */
async function terminateMidStatement(sql: Sql, name: string) {
  await sql`select set_config('application_name', ${name}, false)`
  const running = sql`select pg_sleep(5)`.then(
    () => 'answered',
    (error: Error & { code?: string }) => error.code ?? error.message
  )
  await until(
    async () =>
      (
        await admin`select 1 from pg_stat_activity
                     where application_name = ${name} and state = 'active' and query like '%pg_sleep%'`
      ).length > 0,
    'the statement to run',
    5000
  )
  await admin`select pg_terminate_backend(pid) from pg_stat_activity where application_name = ${name}`
  return running
}

describe('a pooled connection terminated while it ran a statement', () => {
  const next = {
    statement: (sql: Sql) => sql<{ one: number }[]>`select 1 as one`,
    transaction: (sql: Sql) => sql.begin((tx) => tx<{ one: number }[]>`select 1 as one`)
  }
  for (const statementTimeoutMs of [5000, 0]) {
    for (const [what, run] of Object.entries(next)) {
      test(`when a ${what} reconnects it next (statement deadline ${statementTimeoutMs} ms), then it runs and answers, not with the dead backend's error`, async () => {
        // Arrange: one connection, killed in the middle of a statement.
        const sql = createSql(db.url, { max: 1, statementTimeoutMs })
        try {
          const killed = await terminateMidStatement(sql, `tandem_pool_test_${what}_${statementTimeoutMs}`)
          assert.notEqual(killed, 'answered')

          // Act: the next work on the reconnected connection, and the statement after it.
          const [first] = await run(sql)
          const [second] = await sql<{ two: number }[]>`select 2 as two`

          // Assert
          assert.equal(first.one, 1)
          assert.equal(second.two, 2)
        } finally {
          await sql.end({ timeout: 5 })
        }
      })
    }
  }
})
