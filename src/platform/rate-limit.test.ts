import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { createDatabase, type TestDatabase } from '../../test/helpers/database.js'
import { admission, bookAttempt } from './rate-limit.js'
import { TooManyRequests } from './errors.js'

let db: TestDatabase

before(async () => {
  db = await createDatabase({ migrated: true, lockTimeoutMs: 500 })
})
after(async () => {
  await db.drop()
})

describe('the rate limit shared by every replica', () => {
  test('lets `perMinute` attempts through at once and refuses the next with its wait', async () => {
    const limit = { key: `test:${randomUUID()}`, perMinute: 3 }

    for (let i = 0; i < 3; i++) await bookAttempt(db.sql, limit)
    const refused = await bookAttempt(db.sql, limit).then(
      () => undefined,
      (error: unknown) => error
    )

    assert.ok(refused instanceof TooManyRequests, `refused with ${String(refused)}`)
    assert.ok(
      refused.retryAfterSeconds >= 19 && refused.retryAfterSeconds <= 20,
      `Retry-After ${refused.retryAfterSeconds}`
    )
  })

  // Parallel attempts from two replicas queue on the key's row lock in an order that need not be the
  // order their statements began in; an attempt whose statement began first but got the lock last
  // must still find the allowance the others left it, not one measured from its older start.
  test('an attempt that began before the others but got the key last is the third of three, and let through', async () => {
    const limit = { key: `test:${randomUUID()}`, perMinute: 3 }
    let early!: Promise<unknown>
    const begun = new Promise<void>((resolve) => {
      early = db.sql.begin(async (tx) => {
        await tx`select now()`
        resolve()
        await sleep(50)
        await others
        return bookAttempt(tx, limit).then(
          () => 'allowed',
          (error: unknown) => error
        )
      })
    })
    const others = begun.then(async () => {
      await sleep(20)
      await bookAttempt(db.sql, limit)
      await bookAttempt(db.sql, limit)
    })

    assert.equal(await early, 'allowed')
    await assert.rejects(bookAttempt(db.sql, limit), TooManyRequests)
  })

  // A lookup that finds its sheet books nothing: it must not queue behind a transaction that holds
  // the address's row (a sign-in with an Idempotency-Key holds it to its commit), or one slow
  // request from a classroom's address would stall every sign-in from it on every replica.
  test('an uncharged check does not wait for a transaction holding the key, and still sees a spent limit', async () => {
    const limit = { key: `test:${randomUUID()}`, perMinute: 2 }
    const check = async () => {
      const { cte, allowed } = admission(db.sql, limit, db.sql`false`)
      const [row] = await db.sql<{ allowed: boolean }[]>`with ${cte} select ${allowed} as allowed`
      return row.allowed
    }
    await bookAttempt(db.sql, limit)

    const release = await db.holdLock((tx) => bookAttempt(tx, limit))
    let whileHeld: boolean
    try {
      whileHeld = await check()
    } finally {
      await release()
    }
    const spent = await check()

    assert.equal(whileHeld, true, 'one of two attempts was committed: one more fits')
    assert.equal(spent, false, 'both booked: a charged attempt would be refused, so is the check')
    const [{ count }] = await db.sql<
      { count: number }[]
    >`select count(*)::int from rate_limits where key = ${limit.key}`
    assert.equal(count, 1)
  })
})
