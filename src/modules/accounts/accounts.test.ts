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
    assert.deepEqual(Object.keys(res.body).sort(), ['email', 'id'])
    assert.equal(res.body.email, email.toLowerCase())
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

  const invalid: Array<[string, unknown]> = [
    ['an invalid email', { email: 'not-an-email', password: 'long enough' }],
    ['a password of 7 characters', { email: newEmail(), password: '1234567' }],
    ['no password', { email: newEmail() }],
    ['no email', { password: 'long enough' }],
    ['a numeric password', { email: newEmail(), password: 12345678 }]
  ]
  for (const [name, body] of invalid) {
    test(`${name}: 422 naming the field, nothing written`, async () => {
      const before = await db.sql`select count(*)::int from users`

      const res = await request(a.url, 'POST', '/api/users', { json: body })

      assert.equal(res.status, 422)
      assert.equal(res.body.error, 'invalid-input')
      assert.ok(res.body.details.length > 0)
      assert.deepEqual(await db.sql`select count(*)::int from users`, before)
    })
  }
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
