import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { createDatabase, type TestDatabase } from '../../test/helpers/database.js'
import { bookAttempt } from './rate-limit.js'
import { TooManyRequests } from './errors.js'

let db: TestDatabase

before(async () => { db = await createDatabase({ migrated: true }) })
after(async () => { await db.drop() })

describe('the rate limit shared by every replica', () => {
  test('lets `perMinute` attempts through at once and refuses the next with its wait', async () => {
    const limit = { key: `test:${randomUUID()}`, perMinute: 3 }

    for (let i = 0; i < 3; i++) await bookAttempt(db.sql, limit)
    const refused = await bookAttempt(db.sql, limit).then(() => undefined, (error: unknown) => error)

    assert.ok(refused instanceof TooManyRequests, `refused with ${String(refused)}`)
    assert.ok(refused.retryAfterSeconds >= 19 && refused.retryAfterSeconds <= 20, `Retry-After ${refused.retryAfterSeconds}`)
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
        return bookAttempt(tx, limit).then(() => 'allowed', (error: unknown) => error)
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
})
