import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { newEmail, signUp } from '../../../test/helpers/accounts.js'
import { createDatabase, type TestDatabase } from '../../../test/helpers/database.js'
import { request } from '../../../test/helpers/http.js'
import { spawnServer, type ServerProcess } from '../../../test/helpers/servers.js'

let db: TestDatabase
let a: ServerProcess
let b: ServerProcess

before(async () => {
  db = await createDatabase()
  ;[a, b] = await Promise.all([1, 2].map(() => spawnServer('serve', { DATABASE_URL: db.url })))
})

after(async () => {
  await Promise.all([a.stop(), b.stop()])
  await db.drop()
})

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

    const res = await request(b.url, 'POST', '/api/users', { json: { email: email.toUpperCase(), password: 'other password' } })

    assert.equal(res.status, 409)
    assert.equal(res.body.error, 'email-taken')
    const [{ count }] = await db.sql`select count(*)::int from users where email = ${email}`
    assert.equal(count, 1)
  })

  test('racing registrations of one email across replicas: exactly one 201', async () => {
    const email = newEmail()

    const results = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      request([a, b][i % 2].url, 'POST', '/api/users', { json: { email, password: 'long enough' } })))

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
      assert.deepEqual(res.body.details.map((detail: string) => detail.split(':')[0]), fields)
      assert.deepEqual([...await db.sql`select 1 from users where email = ${email}`], [])
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

    const attempts: Array<Record<string, string>> = [{}, { authorization: 'Bearer nonsense' }, { cookie: 'tandem_session=nonsense' }, user.bearer]
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
      assert.deepEqual(res.body.details.map((detail: string) => detail.split(':')[0]), fields)
      const [row] = await db.sql`select first_name, last_name from users where id = ${user.userId}`
      assert.deepEqual({ ...row }, { first_name: 'Ana', last_name: 'Sousa' })
    })
  }

  test('PATCH without a session: 401; with the cookie from another site: 403', async () => {
    const user = await signUp(a.url)

    assert.equal((await request(a.url, 'PATCH', '/api/users/me', { json: { firstName: 'X' } })).status, 401)
    const crossSite = await request(a.url, 'PATCH', '/api/users/me', {
      json: { firstName: 'Mallory' }, headers: { ...user.cookie, 'sec-fetch-site': 'cross-site' }
    })
    assert.equal(crossSite.status, 403)
    assert.deepEqual([...await db.sql`select first_name from users where id = ${user.userId}`], [{ first_name: '' }])
  })
})

describe('PUT /api/users/me/password', () => {
  test("changes the password and ends the user's other sessions on every replica, keeping the caller's", async () => {
    const user = await signUp(a.url, 'old password')
    const other = await request(b.url, 'POST', '/api/sessions', { json: { email: user.email, password: 'old password' } })
    const otherBearer = { authorization: `Bearer ${other.body.token}` }
    const someoneElse = await signUp(a.url)

    const res = await request(b.url, 'PUT', '/api/users/me/password', {
      json: { currentPassword: 'old password', newPassword: 'new password' }, headers: user.bearer
    })

    assert.equal(res.status, 204)
    for (const server of [a, b]) {
      assert.equal((await request(server.url, 'GET', '/api/users/me', { headers: otherBearer })).status, 401)
      assert.equal((await request(server.url, 'GET', '/api/users/me', { headers: user.bearer })).status, 200)
    }
    assert.equal((await request(a.url, 'GET', '/api/users/me', { headers: someoneElse.bearer })).status, 200)
    const [{ count }] = await db.sql`select count(*)::int from sessions where user_id = ${user.userId}`
    assert.equal(count, 1)
    assert.equal((await request(a.url, 'POST', '/api/sessions', { json: { email: user.email, password: 'old password' } })).status, 401)
    assert.equal((await request(a.url, 'POST', '/api/sessions', { json: { email: user.email, password: 'new password' } })).status, 201)
  })

  test('a wrong current password: 403, nothing changes and no session ends', async () => {
    const user = await signUp(a.url, 'old password')
    const other = await request(b.url, 'POST', '/api/sessions', { json: { email: user.email, password: 'old password' } })
    const [before] = await db.sql`select password_hash from users where id = ${user.userId}`

    const res = await request(a.url, 'PUT', '/api/users/me/password', {
      json: { currentPassword: 'not the password', newPassword: 'new password' }, headers: user.bearer
    })

    assert.equal(res.status, 403)
    assert.equal(res.body.error, 'forbidden')
    assert.deepEqual([...await db.sql`select password_hash from users where id = ${user.userId}`], [before])
    assert.equal((await request(a.url, 'GET', '/api/users/me', { headers: { authorization: `Bearer ${other.body.token}` } })).status, 200)
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
      assert.deepEqual([...await db.sql`select password_hash from users where id = ${user.userId}`], [before])
    })
  }

  test('no session: 401', async () => {
    const res = await request(a.url, 'PUT', '/api/users/me/password', { json: { currentPassword: 'old password', newPassword: 'new password' } })

    assert.equal(res.status, 401)
  })
})

describe('login rate limit', () => {
  test('past 20 attempts a minute for one email from one address, over both replicas: 429 with Retry-After', async () => {
    const user = await signUp(a.url, 'the password')

    const attempts = await Promise.all(Array.from({ length: 21 }, (_, i) =>
      request([a, b][i % 2].url, 'POST', '/api/sessions', { json: { email: user.email, password: 'a wrong guess' } })))
    const afterwards = await request(a.url, 'POST', '/api/sessions', { json: { email: user.email, password: 'the password' } })

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
    await Promise.all(Array.from({ length: 21 }, () =>
      request(a.url, 'POST', '/api/sessions', { json: { email: target.email, password: 'a wrong guess' } })))

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
    assert.doesNotMatch(user.setCookie, /Secure/, 'not Secure outside production')
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

    const wrong = await request(a.url, 'POST', '/api/sessions', { json: { email: user.email, password: 'not the password' } })
    const unknown = await request(a.url, 'POST', '/api/sessions', { json: { email: newEmail(), password: 'not the password' } })

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
    assert.equal((await request(b.url, 'GET', '/api/sessions', { headers: user.bearer })).status, 401)
    assert.equal((await request(b.url, 'GET', '/api/sessions', { headers: user.cookie })).status, 401)
    assert.deepEqual([...await db.sql`select 1 from sessions where user_id = ${user.userId}`], [])
  })

  test('a cookie-authenticated write from another site is refused; a Bearer one is not', async () => {
    const user = await signUp(a.url)
    const evil = { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' }

    const withCookie = await request(a.url, 'DELETE', '/api/sessions', { headers: { ...user.cookie, ...evil } })
    assert.equal(withCookie.status, 403)
    assert.equal((await request(a.url, 'GET', '/api/sessions', { headers: user.cookie })).status, 200, 'still logged in')

    const withBearer = await request(a.url, 'DELETE', '/api/sessions', { headers: { ...user.bearer, ...evil } })
    assert.equal(withBearer.status, 204)
  })
})

describe('session lifetime and production cookies', () => {
  let short: ServerProcess

  before(async () => {
    short = await spawnServer('serve', { DATABASE_URL: db.url, NODE_ENV: 'production', SESSION_IDLE_MS: '1500' })
  })
  after(async () => { await short.stop() })

  test('in production the cookie is Secure', async () => {
    const user = await signUp(short.url)

    assert.match(user.setCookie, /; Secure/)
  })

  test('a session unused for longer than SESSION_IDLE_MS is refused', async () => {
    const user = await signUp(short.url)
    assert.equal((await request(short.url, 'GET', '/api/sessions', { headers: user.bearer })).status, 200)

    await sleep(2000)

    assert.equal((await request(short.url, 'GET', '/api/sessions', { headers: user.bearer })).status, 401)
  })
})
