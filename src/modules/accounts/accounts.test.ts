import assert from 'node:assert/strict'
import { createHash, randomInt } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { newEmail, signUp } from '../../../test/helpers/accounts.js'
import { createDatabase, type TestDatabase } from '../../../test/helpers/database.js'
import { request } from '../../../test/helpers/http.js'
import { startApp } from '../../../test/helpers/servers.js'
import { until } from '../../../test/helpers/wait.js'
import { Unavailable } from '../../platform/errors.js'
import { passwordHasher, unknownUserHash } from './passwords.js'
import { pruneSessions } from './queries.js'

type Replica = Awaited<ReturnType<typeof startApp>>

let db: TestDatabase
// Two apps on one database: two replicas.
let a: Replica
let b: Replica

before(async () => {
  db = await createDatabase({ migrated: true })
  ;[a, b] = await Promise.all([1, 2].map(() => startApp(db.sql)))
})

after(async () => {
  await Promise.all([a.app.close(), b.app.close()])
  await db.drop()
})

// Apps started with TRUST_PROXY=127.0.0.1 take the client address from X-Forwarded-For: each test
// gets addresses of its own, so the limits counted per address start afresh.
const randomAddress = () => `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`
const from = (address: string) => ({ 'x-forwarded-for': address })
const tokenHash = (token: string) => createHash('sha256').update(token).digest()

/** Registers a user without logging in (so no login limit is booked for the email). */
async function register(base: string, password = 'the password', headers: Record<string, string> = {}) {
  const email = newEmail()
  const res = await request(base, 'POST', '/api/users', { json: { email, password }, headers })
  assert.equal(res.status, 201, res.text)
  return { email, password, userId: res.body.id as number }
}

const login = (base: string, email: string, password: string, headers: Record<string, string> = {}) =>
  request(base, 'POST', '/api/sessions', { json: { email, password }, headers })

const changePassword = (
  base: string,
  headers: Record<string, string>,
  currentPassword: string,
  newPassword = 'new password'
) => request(base, 'PUT', '/api/users/me/password', { json: { currentPassword, newPassword }, headers })

function assertRetryAfter(res: { headers: Headers }) {
  const retryAfter = Number(res.headers.get('retry-after'))
  assert.ok(
    Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60,
    `Retry-After ${res.headers.get('retry-after')}`
  )
}

async function storedEmails(emails: string[]): Promise<string[]> {
  const rows = await db.sql<{ email: string }[]>`select email from users where email in ${db.sql(emails)}`
  return rows.map((row) => row.email).sort()
}

describe('POST /api/users', () => {
  test('registers a user with a lower-cased email and a salted slow hash', async () => {
    const email = newEmail().toUpperCase()

    const res = await request(a.url, 'POST', '/api/users', { json: { email, password: 'long enough' } })

    assert.equal(res.status, 201)
    assert.deepEqual(Object.keys(res.body).sort(), ['email', 'firstName', 'id', 'lastName'])
    assert.equal(res.body.email, email.toLowerCase())
    assert.equal(res.body.firstName, '', 'no names given: empty ones')
    const [row] = await db.sql`select password_hash from users where id = ${res.body.id}`
    assert.match(row.password_hash, /^scrypt\$\d+\$\d+\$\d+\$[^$]+\$[^$]+$/)
    assert.ok(!row.password_hash.includes('long enough'))
  })

  test('the same email again, in other letters case, on the other replica: 409, one row', async () => {
    const email = newEmail()
    await request(a.url, 'POST', '/api/users', { json: { email, password: 'long enough' } })

    const res = await request(b.url, 'POST', '/api/users', {
      json: { email: email.toUpperCase(), password: 'other password' }
    })

    assert.equal(res.status, 409)
    assert.equal(res.body.error, 'email-taken')
    const [{ count }] = await db.sql`select count(*)::int from users where email = ${email}`
    assert.equal(count, 1)
  })

  test('racing registrations of one email across replicas: exactly one 201', async () => {
    const email = newEmail()

    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        request([a, b][i % 2].url, 'POST', '/api/users', { json: { email, password: 'long enough' } })
      )
    )

    assert.deepEqual(results.map((res) => res.status).sort(), [201, ...Array(9).fill(409)])
  })

  test('registers first and last name, trimmed', async () => {
    const email = newEmail()

    const res = await request(b.url, 'POST', '/api/users', {
      json: { email, password: 'long enough', firstName: '  Teresa ', lastName: 'Tavares de Sá' }
    })

    assert.equal(res.status, 201)
    assert.deepEqual(res.body, { id: res.body.id, email, firstName: 'Teresa', lastName: 'Tavares de Sá' })
    const [row] = await db.sql`select first_name, last_name from users where id = ${res.body.id}`
    assert.deepEqual({ ...row }, { first_name: 'Teresa', last_name: 'Tavares de Sá' })
  })

  const invalid: Array<[string, Record<string, unknown>, string[]]> = [
    ['an invalid email', { email: 'not-an-email', password: 'long enough' }, ['email']],
    ['a password of 7 characters', { password: '1234567' }, ['password']],
    ['no password', { password: undefined }, ['password']],
    ['no email', { email: undefined }, ['email']],
    ['a numeric password', { password: 12345678 }, ['password']],
    ['a blank first name', { firstName: '   ' }, ['firstName']],
    ['an empty last name', { lastName: '' }, ['lastName']],
    ['a 101-character last name', { lastName: 'x'.repeat(101) }, ['lastName']],
    ['a numeric first name', { firstName: 42 }, ['firstName']],
    ['both names blank', { firstName: ' ', lastName: '\t' }, ['firstName', 'lastName']]
  ]
  for (const [name, change, fields] of invalid) {
    test(`${name}: 422 naming the field, nothing written`, async () => {
      const email = newEmail()
      const body = { email, password: 'long enough', ...change }

      const res = await request(a.url, 'POST', '/api/users', { json: body })

      assert.equal(res.status, 422)
      assert.equal(res.body.error, 'invalid-input')
      assert.deepEqual(
        res.body.details.map((detail: string) => detail.split(':')[0]),
        fields
      )
      assert.deepEqual([...(await db.sql`select 1 from users where email = ${email}`)], [])
    })
  }
})

describe('profile', () => {
  test('GET /api/users/me answers the caller, on every replica', async () => {
    const user = await signUp(a.url, 'long enough', { firstName: 'Ana', lastName: 'Sousa' })

    for (const server of [a, b]) {
      const res = await request(server.url, 'GET', '/api/users/me', { headers: user.cookie })
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { id: user.userId, email: user.email, firstName: 'Ana', lastName: 'Sousa' })
    }
  })

  test('GET /api/users/me with no, a garbage or a logged-out token: 401', async () => {
    const user = await signUp(a.url)
    await request(a.url, 'DELETE', '/api/sessions', { headers: user.bearer })

    const attempts: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer nonsense' },
      { cookie: 'tandem_session=nonsense' },
      user.bearer
    ]
    for (const headers of attempts) {
      const res = await request(b.url, 'GET', '/api/users/me', { headers })
      assert.equal(res.status, 401)
      assert.equal(res.body.error, 'unauthorized')
    }
  })

  test('PATCH changes the names given, trimmed, and keeps the other', async () => {
    const user = await signUp(a.url, 'long enough', { firstName: 'Ana', lastName: 'Sousa' })

    const res = await request(b.url, 'PATCH', '/api/users/me', { json: { firstName: ' Joana ' }, headers: user.bearer })

    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { id: user.userId, email: user.email, firstName: 'Joana', lastName: 'Sousa' })
    const [row] = await db.sql`select first_name, last_name from users where id = ${user.userId}`
    assert.deepEqual({ ...row }, { first_name: 'Joana', last_name: 'Sousa' })
  })

  test('PATCH with an empty body changes nothing', async () => {
    const user = await signUp(a.url, 'long enough', { firstName: 'Ana', lastName: 'Sousa' })

    const res = await request(a.url, 'PATCH', '/api/users/me', { json: {}, headers: user.bearer })

    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { id: user.userId, email: user.email, firstName: 'Ana', lastName: 'Sousa' })
  })

  for (const [name, body, fields] of [
    ['a blank first name', { firstName: '  ', lastName: 'Costa' }, ['firstName']],
    ['a 101-character last name', { lastName: 'x'.repeat(101) }, ['lastName']],
    ['a null first name', { firstName: null }, ['firstName']]
  ] as Array<[string, unknown, string[]]>) {
    test(`PATCH with ${name}: 422, nothing changed`, async () => {
      const user = await signUp(a.url, 'long enough', { firstName: 'Ana', lastName: 'Sousa' })

      const res = await request(a.url, 'PATCH', '/api/users/me', { json: body, headers: user.bearer })

      assert.equal(res.status, 422)
      assert.deepEqual(
        res.body.details.map((detail: string) => detail.split(':')[0]),
        fields
      )
      const [row] = await db.sql`select first_name, last_name from users where id = ${user.userId}`
      assert.deepEqual({ ...row }, { first_name: 'Ana', last_name: 'Sousa' })
    })
  }

  test('PATCH without a session: 401; with the cookie from another site: 403', async () => {
    const user = await signUp(a.url)

    assert.equal((await request(a.url, 'PATCH', '/api/users/me', { json: { firstName: 'X' } })).status, 401)
    const crossSite = await request(a.url, 'PATCH', '/api/users/me', {
      json: { firstName: 'Mallory' },
      headers: { ...user.cookie, 'sec-fetch-site': 'cross-site' }
    })
    assert.equal(crossSite.status, 403)
    assert.deepEqual([...(await db.sql`select first_name from users where id = ${user.userId}`)], [{ first_name: '' }])
  })
})

describe('PUT /api/users/me/password', () => {
  test("changes the password and rotates the caller's token: a fresh session in the answer and the cookie, every older one ends on every replica", async () => {
    const user = await signUp(a.url, 'old password')
    const other = await login(b.url, user.email, 'old password')
    const otherBearer = { authorization: `Bearer ${other.body.token}` }
    const someoneElse = await signUp(a.url)

    const res = await changePassword(b.url, user.bearer, 'old password')

    assert.equal(res.status, 200)
    assert.deepEqual(Object.keys(res.body).sort(), ['expiresAt', 'token', 'userId'])
    assert.equal(res.body.userId, user.userId)
    assert.match(res.body.token, /^[\w-]{43}$/)
    assert.notEqual(res.body.token, user.token)
    assert.ok(Date.parse(res.body.expiresAt) > Date.now())
    const setCookie = res.headers.get('set-cookie') ?? ''
    assert.ok(setCookie.startsWith(`tandem_session=${res.body.token};`), setCookie)
    assert.match(setCookie, /HttpOnly/)
    assert.match(setCookie, /SameSite=Lax/)
    const fresh = { authorization: `Bearer ${res.body.token}` }
    for (const server of [a, b]) {
      assert.equal(
        (await request(server.url, 'GET', '/api/users/me', { headers: user.bearer })).status,
        401,
        'the old token'
      )
      assert.equal(
        (await request(server.url, 'GET', '/api/users/me', { headers: otherBearer })).status,
        401,
        'another session'
      )
      assert.equal((await request(server.url, 'GET', '/api/users/me', { headers: fresh })).status, 200, 'the new token')
      assert.equal(
        (await request(server.url, 'GET', '/api/users/me', { headers: { cookie: `tandem_session=${res.body.token}` } }))
          .status,
        200
      )
    }
    assert.equal((await request(a.url, 'GET', '/api/users/me', { headers: someoneElse.bearer })).status, 200)
    const stored = await db.sql`select token_hash from sessions where user_id = ${user.userId}`
    assert.deepEqual(
      stored.map((row) => row.token_hash),
      [tokenHash(res.body.token)]
    )
    assert.equal((await login(a.url, user.email, 'old password')).status, 401)
    assert.equal((await login(a.url, user.email, 'new password')).status, 201)
  })

  test('a wrong current password: 403, nothing changes and no session ends', async () => {
    const user = await signUp(a.url, 'old password')
    const other = await request(b.url, 'POST', '/api/sessions', {
      json: { email: user.email, password: 'old password' }
    })
    const [before] = await db.sql`select password_hash from users where id = ${user.userId}`

    const res = await request(a.url, 'PUT', '/api/users/me/password', {
      json: { currentPassword: 'not the password', newPassword: 'new password' },
      headers: user.bearer
    })

    assert.equal(res.status, 403)
    assert.equal(res.body.error, 'forbidden')
    assert.deepEqual([...(await db.sql`select password_hash from users where id = ${user.userId}`)], [before])
    assert.equal(
      (await request(a.url, 'GET', '/api/users/me', { headers: { authorization: `Bearer ${other.body.token}` } }))
        .status,
      200
    )
  })

  for (const [name, body] of [
    ['a new password of 7 characters', { currentPassword: 'old password', newPassword: '1234567' }],
    ['no current password', { newPassword: 'new password' }]
  ] as Array<[string, unknown]>) {
    test(`${name}: 422, nothing changes`, async () => {
      const user = await signUp(a.url, 'old password')
      const [before] = await db.sql`select password_hash from users where id = ${user.userId}`

      const res = await request(a.url, 'PUT', '/api/users/me/password', { json: body, headers: user.bearer })

      assert.equal(res.status, 422)
      assert.deepEqual([...(await db.sql`select password_hash from users where id = ${user.userId}`)], [before])
    })
  }

  test('no session: 401', async () => {
    const res = await request(a.url, 'PUT', '/api/users/me/password', {
      json: { currentPassword: 'old password', newPassword: 'new password' }
    })

    assert.equal(res.status, 401)
  })
})

describe('login rate limit', () => {
  test('past 20 attempts a minute for one email from one address, over both replicas: 429 with Retry-After', async () => {
    const user = await signUp(a.url, 'the password')

    const attempts = await Promise.all(
      Array.from({ length: 21 }, (_, i) =>
        request([a, b][i % 2].url, 'POST', '/api/sessions', { json: { email: user.email, password: 'a wrong guess' } })
      )
    )
    const afterwards = await request(a.url, 'POST', '/api/sessions', {
      json: { email: user.email, password: 'the password' }
    })

    // signUp's own login was the first of the minute's 20.
    const statuses = attempts.map((res) => res.status).sort()
    assert.deepEqual(statuses, [...Array(19).fill(401), 429, 429])
    assert.equal(afterwards.status, 429, 'even the right password waits')
    const retryAfter = Number(afterwards.headers.get('retry-after'))
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`)
    assert.equal(afterwards.body.error, 'too-many-requests')
  })

  test('the limit is per email: another account logs in from the same address meanwhile', async () => {
    const target = await signUp(a.url, 'the password')
    await Promise.all(
      Array.from({ length: 21 }, () =>
        request(a.url, 'POST', '/api/sessions', { json: { email: target.email, password: 'a wrong guess' } })
      )
    )

    const other = await signUp(b.url)

    assert.match(other.token, /^[\w-]{43}$/)
  })
})

describe('sessions', () => {
  test('login answers a token, sets an HttpOnly SameSite=Lax cookie and stores only a hash', async () => {
    const user = await signUp(a.url)

    assert.match(user.token, /^[\w-]{43}$/)
    assert.match(user.setCookie, /^tandem_session=[\w-]+;/)
    assert.match(user.setCookie, /HttpOnly/)
    assert.match(user.setCookie, /SameSite=Lax/)
    assert.doesNotMatch(user.setCookie, /Secure/, 'not Secure over plain HTTP')
    const stored = await db.sql`select token_hash from sessions where user_id = ${user.userId}`
    assert.equal(stored.length, 1)
    assert.ok(!stored[0].token_hash.toString('latin1').includes(user.token))
  })

  test('the session works on every replica, as Bearer token and as cookie', async () => {
    const user = await signUp(a.url)

    for (const server of [a, b]) {
      for (const headers of [user.bearer, user.cookie]) {
        const res = await request(server.url, 'GET', '/api/sessions', { headers })
        assert.equal(res.status, 200)
        assert.deepEqual(res.body, { userId: user.userId, email: user.email })
      }
    }
  })

  test('a wrong password and an unknown email get the same 401', async () => {
    const user = await signUp(a.url)

    const wrong = await request(a.url, 'POST', '/api/sessions', {
      json: { email: user.email, password: 'not the password' }
    })
    const unknown = await request(a.url, 'POST', '/api/sessions', {
      json: { email: newEmail(), password: 'not the password' }
    })

    assert.equal(wrong.status, 401)
    assert.equal(unknown.status, 401)
    assert.deepEqual(wrong.body, unknown.body)
  })

  test('no token, a garbage token: 401', async () => {
    assert.equal((await request(a.url, 'GET', '/api/sessions')).status, 401)
    const garbage = await request(a.url, 'GET', '/api/sessions', { headers: { authorization: 'Bearer nonsense' } })
    assert.equal(garbage.status, 401)
    assert.equal(garbage.body.error, 'unauthorized')
  })

  test('logout on one replica is refused by the other from then on', async () => {
    const user = await signUp(a.url)

    const out = await request(a.url, 'DELETE', '/api/sessions', { headers: user.bearer })

    assert.equal(out.status, 204)
    const cleared = out.headers.get('set-cookie') ?? ''
    assert.match(cleared, /^tandem_session=; Path=\/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax$/)
    assert.equal((await request(b.url, 'GET', '/api/sessions', { headers: user.bearer })).status, 401)
    assert.equal((await request(b.url, 'GET', '/api/sessions', { headers: user.cookie })).status, 401)
    assert.deepEqual([...(await db.sql`select 1 from sessions where user_id = ${user.userId}`)], [])
  })

  test('pruning deletes the sessions past their expiry or idle beyond SESSION_IDLE_MS, and no live one', async () => {
    const user = await signUp(a.url)
    const [expired, idle] = await Promise.all(
      [1, 2].map(async () => (await login(a.url, user.email, user.password)).body.token as string)
    )
    await db.sql`update sessions set expires_at = now() - interval '1 second' where token_hash = ${tokenHash(expired)}`
    await db.sql`update sessions set last_used_at = now() - interval '61 seconds' where token_hash = ${tokenHash(idle)}`

    await pruneSessions(db.sql, 60_000)

    const left = await db.sql`select token_hash from sessions where user_id = ${user.userId}`
    assert.deepEqual(
      left.map((row) => row.token_hash),
      [tokenHash(user.token)]
    )
  })

  test('a cookie-authenticated write from another site is refused; a Bearer one is not', async () => {
    const user = await signUp(a.url)
    const evil = { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' }

    const withCookie = await request(a.url, 'DELETE', '/api/sessions', { headers: { ...user.cookie, ...evil } })
    assert.equal(withCookie.status, 403)
    assert.equal(
      (await request(a.url, 'GET', '/api/sessions', { headers: user.cookie })).status,
      200,
      'still logged in'
    )

    const withBearer = await request(a.url, 'DELETE', '/api/sessions', { headers: { ...user.bearer, ...evil } })
    assert.equal(withBearer.status, 204)
  })
})

describe('registration limits', () => {
  // Two replicas that take the client address from X-Forwarded-For, with a small per-address limit.
  let strict: Replica[]

  before(async () => {
    strict = await Promise.all(
      [1, 2].map(() => startApp(db.sql, { TRUST_PROXY: '127.0.0.1', REGISTRATION_LIMIT_PER_MINUTE: '3' }))
    )
  })
  after(async () => {
    await Promise.all(strict.map((replica) => replica.app.close()))
  })

  test('past REGISTRATION_LIMIT_PER_MINUTE from one address, over both replicas: 429 with Retry-After, and the refused one wrote nothing', async () => {
    const address = randomAddress()
    const emails = Array.from({ length: 4 }, newEmail)

    const results = await Promise.all(
      emails.map((email, i) =>
        request(strict[i % 2].url, 'POST', '/api/users', {
          json: { email, password: 'long enough' },
          headers: from(address)
        })
      )
    )

    assert.deepEqual(results.map((res) => res.status).sort(), [201, 201, 201, 429])
    const refused = results.findIndex((res) => res.status === 429)
    assert.equal(results[refused].body.error, 'too-many-requests')
    assertRetryAfter(results[refused])
    assert.deepEqual(await storedEmails(emails), emails.filter((_, i) => i !== refused).sort())
  })

  test('the limit is per address: another address registers meanwhile', async () => {
    const address = randomAddress()
    await Promise.all(
      Array.from({ length: 4 }, () =>
        request(strict[0].url, 'POST', '/api/users', {
          json: { email: newEmail(), password: 'long enough' },
          headers: from(address)
        })
      )
    )

    const user = await register(strict[1].url, 'long enough', from(randomAddress()))

    assert.deepEqual(await storedEmails([user.email]), [user.email])
  })
})

describe('registration limit over the whole cluster', () => {
  // The total is one key for every address: a database of its own keeps the other tests' registrations out of it.
  let own: TestDatabase
  let replicas: Replica[]

  before(async () => {
    own = await createDatabase({ migrated: true })
    replicas = await Promise.all(
      [1, 2].map(() => startApp(own.sql, { TRUST_PROXY: '127.0.0.1', REGISTRATION_TOTAL_LIMIT_PER_MINUTE: '3' }))
    )
  })
  after(async () => {
    await Promise.all(replicas.map((replica) => replica.app.close()))
    await own.drop()
  })

  test('past REGISTRATION_TOTAL_LIMIT_PER_MINUTE from many addresses, over both replicas: 429 with Retry-After, and the refused one wrote nothing', async () => {
    const emails = Array.from({ length: 4 }, newEmail)

    const results = await Promise.all(
      emails.map((email, i) =>
        request(replicas[i % 2].url, 'POST', '/api/users', {
          json: { email, password: 'long enough' },
          headers: from(randomAddress())
        })
      )
    )

    assert.deepEqual(results.map((res) => res.status).sort(), [201, 201, 201, 429])
    const refused = results.findIndex((res) => res.status === 429)
    assertRetryAfter(results[refused])
    const stored = await own.sql<{ email: string }[]>`select email from users`
    assert.deepEqual(stored.map((row) => row.email).sort(), emails.filter((_, i) => i !== refused).sort())
  })
})

describe('password hashing under load', () => {
  // One hash at a time and one waiting: a burst overflows at once.
  let narrow: Replica

  before(async () => {
    narrow = await startApp(db.sql, { PASSWORD_HASH_CONCURRENCY: '1', PASSWORD_HASH_QUEUE_MAX: '1' })
  })
  after(async () => {
    await narrow.app.close()
  })

  test('a burst of registrations past the hashes running and queued gets 503 with Retry-After, and the refused ones wrote nothing', async () => {
    const emails = Array.from({ length: 8 }, newEmail)

    const results = await Promise.all(
      emails.map((email) => request(narrow.url, 'POST', '/api/users', { json: { email, password: 'long enough' } }))
    )

    const statuses = results.map((res) => res.status)
    assert.ok(
      statuses.every((status) => status === 201 || status === 503),
      `statuses ${statuses}`
    )
    assert.ok(statuses.includes(201) && statuses.includes(503), `statuses ${statuses}`)
    for (const res of results.filter((res) => res.status === 503)) {
      assert.equal(res.body.error, 'unavailable')
      assertRetryAfter(res)
    }
    assert.deepEqual(await storedEmails(emails), emails.filter((_, i) => statuses[i] === 201).sort())
    const afterwards = await request(narrow.url, 'POST', '/api/users', {
      json: { email: newEmail(), password: 'long enough' }
    })
    assert.equal(afterwards.status, 201, 'the queue drained')
  })

  test('a hasher refuses at once what neither runs nor fits in its queue, and the queue still gets served', async () => {
    const hasher = passwordHasher({ concurrency: 1, queueMax: 1 })

    const running = hasher.hash('the first password')
    const queued = hasher.verify('the second password', unknownUserHash)
    const refused = hasher.hash('the third password')

    await assert.rejects(refused, (error) => error instanceof Unavailable && error.statusCode === 503)
    assert.match(await running, /^scrypt\$/)
    assert.equal(await queued, false)
    assert.match(await hasher.hash('a later password'), /^scrypt\$/, 'the slots were given back')
  })

  test('logins share the bound: a burst of them gets 503s too, and no session for those', async () => {
    const user = await register(a.url)

    const results = await Promise.all(Array.from({ length: 8 }, () => login(narrow.url, user.email, user.password)))

    const statuses = results.map((res) => res.status)
    assert.ok(
      statuses.every((status) => status === 201 || status === 503),
      `statuses ${statuses}`
    )
    assert.ok(statuses.includes(503), `statuses ${statuses}`)
    const [{ count }] = await db.sql`select count(*)::int from sessions where user_id = ${user.userId}`
    assert.equal(count, statuses.filter((status) => status === 201).length)
  })
})

describe('login limits per address and per email', () => {
  let strict: Replica[]

  before(async () => {
    strict = await Promise.all(
      [1, 2].map(() =>
        startApp(db.sql, {
          TRUST_PROXY: '127.0.0.1',
          LOGIN_ADDRESS_LIMIT_PER_MINUTE: '3',
          LOGIN_EMAIL_LIMIT_PER_MINUTE: '3'
        })
      )
    )
  })
  after(async () => {
    await Promise.all(strict.map((replica) => replica.app.close()))
  })

  test('past LOGIN_ADDRESS_LIMIT_PER_MINUTE from one address over many emails, over both replicas: 429 even for the right password; other addresses log in', async () => {
    const user = await register(a.url)
    const address = randomAddress()

    const guesses = await Promise.all(
      [0, 1, 2].map((i) => login(strict[i % 2].url, newEmail(), 'a wrong guess', from(address)))
    )
    const refused = await login(strict[0].url, user.email, user.password, from(address))
    const elsewhere = await login(strict[1].url, user.email, user.password, from(randomAddress()))

    assert.deepEqual(
      guesses.map((res) => res.status),
      [401, 401, 401]
    )
    assert.equal(refused.status, 429)
    assert.equal(refused.body.error, 'too-many-requests')
    assertRetryAfter(refused)
    assert.equal(elsewhere.status, 201)
    const sessions = await db.sql`select token_hash from sessions where user_id = ${user.userId}`
    assert.deepEqual(
      sessions.map((row) => row.token_hash),
      [tokenHash(elsewhere.body.token)]
    )
  })

  test('past LOGIN_EMAIL_LIMIT_PER_MINUTE for one email over many addresses: 429 even for the right password from a new address; other emails log in', async () => {
    const user = await register(a.url)
    const other = await register(a.url)
    const addresses = [randomAddress(), randomAddress(), randomAddress()]

    const guesses = await Promise.all(
      addresses.map((address, i) => login(strict[i % 2].url, user.email, 'a wrong guess', from(address)))
    )
    const refused = await login(strict[0].url, user.email, user.password, from(randomAddress()))
    const otherEmail = await login(strict[1].url, other.email, other.password, from(addresses[0]))

    assert.deepEqual(
      guesses.map((res) => res.status),
      [401, 401, 401]
    )
    assert.equal(refused.status, 429)
    assertRetryAfter(refused)
    assert.equal(otherEmail.status, 201)
    assert.deepEqual([...(await db.sql`select 1 from sessions where user_id = ${user.userId}`)], [])
  })
})

describe('password change limits', () => {
  let limited: Replica
  let failing: Replica

  before(async () => {
    ;[limited, failing] = await Promise.all([
      startApp(db.sql, { PASSWORD_CHANGE_LIMIT_PER_MINUTE: '3', PASSWORD_CHANGE_MAX_FAILURES: '1000' }),
      startApp(db.sql, { PASSWORD_CHANGE_LIMIT_PER_MINUTE: '1000', PASSWORD_CHANGE_MAX_FAILURES: '3' })
    ])
  })
  after(async () => {
    await Promise.all([limited.app.close(), failing.app.close()])
  })

  test('past PASSWORD_CHANGE_LIMIT_PER_MINUTE for one user, over all its sessions: 429 even for the right password, nothing changes', async () => {
    const user = await signUp(a.url, 'old password')
    const second = { authorization: `Bearer ${(await login(a.url, user.email, 'old password')).body.token}` }
    const [before] = await db.sql`select password_hash from users where id = ${user.userId}`
    const someoneElse = await signUp(a.url, 'old password')

    const guesses = [
      await changePassword(limited.url, user.bearer, 'guess one'),
      await changePassword(limited.url, second, 'guess two'),
      await changePassword(limited.url, user.bearer, 'guess three')
    ]
    const refused = await changePassword(limited.url, second, 'old password')

    assert.deepEqual(
      guesses.map((res) => res.status),
      [403, 403, 403]
    )
    assert.equal(refused.status, 429)
    assert.equal(refused.body.error, 'too-many-requests')
    assertRetryAfter(refused)
    assert.deepEqual([...(await db.sql`select password_hash from users where id = ${user.userId}`)], [before])
    for (const headers of [user.bearer, second]) {
      assert.equal((await request(a.url, 'GET', '/api/users/me', { headers })).status, 200, 'no session ended')
    }
    assert.equal(
      (await changePassword(limited.url, someoneElse.bearer, 'old password')).status,
      200,
      'another user is not limited'
    )
  })

  test('PASSWORD_CHANGE_MAX_FAILURES wrong current passwords end the session making them, on every replica; the other sessions and the password stay', async () => {
    const user = await signUp(a.url, 'old password')
    const other = await login(b.url, user.email, 'old password')
    const [before] = await db.sql`select password_hash from users where id = ${user.userId}`

    const first = await changePassword(failing.url, user.bearer, 'guess one')
    const second = await changePassword(failing.url, user.bearer, 'guess two')
    const third = await changePassword(failing.url, user.bearer, 'guess three')

    assert.deepEqual([first.status, second.status], [403, 403])
    assert.equal(third.status, 401)
    assert.equal(third.body.error, 'unauthorized')
    assert.match(third.headers.get('set-cookie') ?? '', /^tandem_session=;/, 'the cookie is cleared')
    const sessions = await db.sql`select token_hash from sessions where user_id = ${user.userId}`
    assert.deepEqual(
      sessions.map((row) => row.token_hash),
      [tokenHash(other.body.token)]
    )
    for (const server of [a, b, failing]) {
      assert.equal((await request(server.url, 'GET', '/api/users/me', { headers: user.bearer })).status, 401)
      assert.equal(
        (
          await request(server.url, 'GET', '/api/users/me', {
            headers: { authorization: `Bearer ${other.body.token}` }
          })
        ).status,
        200
      )
    }
    assert.deepEqual([...(await db.sql`select password_hash from users where id = ${user.userId}`)], [before])
  })

  test('wrong current passwords count per session: another session of the user keeps its own tries', async () => {
    const user = await signUp(a.url, 'old password')
    const other = { authorization: `Bearer ${(await login(a.url, user.email, 'old password')).body.token}` }
    await changePassword(failing.url, user.bearer, 'guess one')
    await changePassword(failing.url, user.bearer, 'guess two')

    const guess = await changePassword(failing.url, other, 'guess three')
    const right = await changePassword(failing.url, user.bearer, 'old password')

    assert.equal(guess.status, 403)
    assert.equal(right.status, 200)
  })
})

describe('session lifetime in production', () => {
  // A database of its own: with SESSION_IDLE_MS=1500 this replica prunes every session idle that long.
  let own: TestDatabase
  let short: Replica

  before(async () => {
    own = await createDatabase({ migrated: true })
    short = await startApp(own.sql, { NODE_ENV: 'production', SESSION_IDLE_MS: '1500' })
  })
  after(async () => {
    await short.app.close()
    await own.drop()
  })

  test('a session unused for longer than SESSION_IDLE_MS is refused', async () => {
    const user = await signUp(short.url)
    assert.equal((await request(short.url, 'GET', '/api/sessions', { headers: user.bearer })).status, 200)

    await sleep(2000)

    assert.equal((await request(short.url, 'GET', '/api/sessions', { headers: user.bearer })).status, 401)
  })

  test('dead sessions are deleted in the background, with no request for them', async () => {
    const user = await signUp(short.url)
    assert.equal((await own.sql`select 1 from sessions where user_id = ${user.userId}`).length, 1)

    await until(
      async () => (await own.sql`select 1 from sessions where user_id = ${user.userId}`).length === 0,
      'the idle session to be pruned',
      10_000
    )
  })
})
