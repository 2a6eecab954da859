import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { ConfigError, loadConfig } from '../src/config.js'
import { signUp } from './helpers/accounts.js'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { request } from './helpers/http.js'
import { startApp } from './helpers/servers.js'

// Behind a proxy, at any address: what the replicas make of the headers nginx forwards
// (deploy/nginx/nginx.conf: Host and X-Forwarded-Host as the browser sent them, X-Forwarded-Proto,
// X-Forwarded-For replaced by the client's address) with the proxy trusted as one hop.

type Replica = Awaited<ReturnType<typeof startApp>>

let db: TestDatabase
let proxied: Replica[]

before(async () => {
  db = await createDatabase({ migrated: true })
  proxied = await Promise.all([1, 2].map(() => startApp(db.sql, { NODE_ENV: 'production', TRUST_PROXY: '1' })))
})

after(async () => {
  await Promise.all(proxied.map((replica) => replica.app.close()))
  await db.drop()
})

/** The headers nginx sends for a browser that asked for `origin` (scheme://host[:port]). */
const forwardedFor = (origin: string, client = '203.0.113.7') => {
  const url = new URL(origin)
  return { 'x-forwarded-host': url.host, 'x-forwarded-proto': url.protocol.slice(0, -1), 'x-forwarded-for': client }
}

describe('the same-origin check for cookie-authenticated writes', () => {
  test('a write from the page the browser is on succeeds at a LAN address with a port, through either replica', async () => {
    const user = await signUp(proxied[0].url)
    for (const [index, replica] of proxied.entries()) {
      const res = await request(replica.url, 'PATCH', '/api/users/me', {
        json: { firstName: `Lan${index}` },
        headers: { ...user.cookie, ...forwardedFor('http://192.0.2.2:9999'), origin: 'http://192.0.2.2:9999' }
      })
      assert.equal(res.status, 200, res.text)
    }
  })

  test('a write from another site, or from the same host on another port, is refused and changes nothing', async () => {
    const user = await signUp(proxied[0].url, 'correct horse battery', { firstName: 'Before' })
    for (const origin of ['http://evil.test', 'http://192.0.2.2:8080', 'https://192.0.2.2:9999.evil.test']) {
      const res = await request(proxied[1].url, 'PATCH', '/api/users/me', {
        json: { firstName: 'Mallory' },
        headers: { ...user.cookie, ...forwardedFor('http://192.0.2.2:9999'), origin }
      })
      assert.equal(res.status, 403, origin)
      assert.equal(res.body.message, 'cross-site request refused')
    }
    const [row] = await db.sql`select first_name from users where id = ${user.userId}`
    assert.equal(row.first_name, 'Before')
  })

  test('the PUBLIC_URL origin is the page too', async () => {
    const replica = await startApp(db.sql, { TRUST_PROXY: '1', PUBLIC_URL: 'https://attendance.example.org' })
    try {
      const user = await signUp(replica.url)
      const res = await request(replica.url, 'PATCH', '/api/users/me', {
        json: { firstName: 'Public' },
        headers: { ...user.cookie, ...forwardedFor('http://10.0.0.5:9999'), origin: 'https://attendance.example.org' }
      })
      assert.equal(res.status, 200, res.text)
    } finally {
      await replica.app.close()
    }
  })

  test('forwarded headers from a peer that is not trusted are ignored', async () => {
    const direct = await startApp(db.sql, { TRUST_PROXY: 'false' })
    try {
      const user = await signUp(direct.url)
      const res = await request(direct.url, 'PATCH', '/api/users/me', {
        json: { firstName: 'Forged' },
        headers: { ...user.cookie, ...forwardedFor('http://evil.test'), origin: 'http://evil.test' }
      })
      assert.equal(res.status, 403)
    } finally {
      await direct.app.close()
    }
  })
})

describe('the session cookie', () => {
  const loginCookie = async (replica: Replica, headers: Record<string, string>) => {
    const user = await signUp(replica.url)
    const res = await request(replica.url, 'POST', '/api/sessions', {
      json: { email: user.email, password: user.password },
      headers
    })
    assert.equal(res.status, 201, res.text)
    return res.headers.get('set-cookie') ?? ''
  }

  test('in production over plain HTTP it is not Secure, so the browser keeps it', async () => {
    const cookie = await loginCookie(proxied[0], forwardedFor('http://192.0.2.2:9999'))
    assert.match(cookie, /^tandem_session=/)
    assert.doesNotMatch(cookie, /Secure/i)
  })

  test('when the browser used HTTPS it is Secure', async () => {
    const cookie = await loginCookie(proxied[1], forwardedFor('https://attendance.example.org'))
    assert.match(cookie, /; Secure/)
  })

  test('COOKIE_SECURE=true and false override the scheme', async () => {
    const forced = await Promise.all(
      ['true', 'false'].map((value) =>
        startApp(db.sql, { NODE_ENV: 'production', TRUST_PROXY: '1', COOKIE_SECURE: value })
      )
    )
    try {
      assert.match(await loginCookie(forced[0], forwardedFor('http://192.0.2.2:9999')), /; Secure/)
      assert.doesNotMatch(await loginCookie(forced[1], forwardedFor('https://attendance.example.org')), /Secure/i)
    } finally {
      await Promise.all(forced.map((replica) => replica.app.close()))
    }
  })
})

describe('the client address the limits count', () => {
  test('with one trusted hop it is the address the proxy saw, whatever the client put in X-Forwarded-For', async () => {
    const replica = await startApp(db.sql, {
      TRUST_PROXY: '1',
      LOGIN_ADDRESS_LIMIT_PER_MINUTE: '3',
      LOGIN_LIMIT_PER_MINUTE: '3'
    })
    try {
      const statuses: number[] = []
      for (let attempt = 0; attempt < 5; attempt++) {
        // nginx appending to the client's header would give "forged, 198.51.100.9"; replacing it gives the last alone.
        const res = await request(replica.url, 'POST', '/api/sessions', {
          json: { email: `nobody${attempt}@example.org`, password: 'wrong password' },
          headers: { 'x-forwarded-for': `10.9.${attempt}.1, 198.51.100.9` }
        })
        statuses.push(res.status)
      }
      assert.deepEqual(statuses, [401, 401, 401, 429, 429])
    } finally {
      await replica.app.close()
    }
  })
})

describe('the sign-in URL of a sheet', () => {
  const signInUrlVia = async (replica: Replica, origin: string) => {
    const teacher = await signUp(replica.url)
    const headers = { ...teacher.cookie, ...forwardedFor(origin), origin }
    const created = await request(replica.url, 'POST', '/api/attendance/sheet/new', {
      json: { courseUnit: 0, summary: 'tp1' },
      headers
    })
    assert.equal(created.status, 201, created.text)
    const sheet = await request(replica.url, 'GET', `/api/attendance/sheet/${created.body.attendanceId}`, { headers })
    assert.equal(sheet.status, 200, sheet.text)
    return { url: sheet.body.signInUrl as string, id: created.body.attendanceId as string }
  }

  test('carries the scheme, host and port the browser used', async () => {
    for (const origin of ['http://192.0.2.2:9999', 'https://classroom.test:8443', 'http://classroom.test']) {
      const { url, id } = await signInUrlVia(proxied[0], origin)
      assert.equal(url, `${origin}/reg.html?id=${id}`)
    }
  })

  test('is under PUBLIC_URL when it is set', async () => {
    const replica = await startApp(db.sql, { TRUST_PROXY: '1', PUBLIC_URL: 'https://attendance.example.org/' })
    try {
      const { url, id } = await signInUrlVia(replica, 'https://attendance.example.org')
      assert.equal(url, `https://attendance.example.org/reg.html?id=${id}`)
    } finally {
      await replica.app.close()
    }
  })
})

describe('TRUST_PROXY', () => {
  test('takes a hop count or addresses, and refuses "true" (every client could choose its address)', () => {
    assert.equal(loadConfig({ TRUST_PROXY: '1' }).trustProxy, 1)
    assert.equal(loadConfig({ TRUST_PROXY: '10.0.0.0/8,127.0.0.1' }).trustProxy, '10.0.0.0/8,127.0.0.1')
    assert.equal(loadConfig({}).trustProxy, false)
    assert.throws(
      () => loadConfig({ TRUST_PROXY: 'true' }),
      (error: Error) =>
        error instanceof ConfigError &&
        /^Invalid environment variable TRUST_PROXY\b/.test(error.message) &&
        /hop count/.test(error.message)
    )
    assert.throws(() => loadConfig({ TRUST_PROXY: '0' }), ConfigError)
  })
})
