import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { signUp } from './helpers/accounts.js'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { request } from './helpers/http.js'
import { startApp } from './helpers/servers.js'

// What every route does before and around its handler: ill-formed text, HEAD, the framework's own
// errors, raw protocol errors and the security headers.

let db: TestDatabase
let app: FastifyInstance
let base: string

before(async () => {
  db = await createDatabase({ migrated: true, statementTimeoutMs: 5000 })
  ;({ url: base, app } = await startApp(db.sql, { TRUST_PROXY: '127.0.0.1' }))
})

after(async () => {
  await app.close()
  await db.drop()
})

/** Row counts of every table a request could write to, and the values that change in place. */
async function storedState() {
  const [row] = await db.sql`
    select (select count(*) from transacoes)::int as transacoes,
           (select coalesce(sum(saldo), 0) from clientes)::int as saldos,
           (select count(*) from increments)::int as increments,
           (select count(*) from users)::int as users,
           (select string_agg(password_hash || first_name || last_name, ',' order by id) from users) as profiles,
           (select count(*) from sessions)::int as sessions,
           (select count(*) from attendance_sheets)::int as sheets,
           (select count(*) from registrations)::int as registrations,
           (select value from counters where name = 'requests')::int as counter`
  return row
}

/** Sends raw bytes and answers everything the server wrote until it closed the connection. */
function rawExchange(bytes: string, timeoutMs = 5000): Promise<string> {
  const { port, hostname } = new URL(base)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(bytes))
    let received = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(received)}`))
    }, timeoutMs)
    socket.on('data', (chunk) => {
      received += chunk
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(received)
    })
  })
}

/** The JSON body of a raw HTTP response, asserting the headers say JSON and nosniff. */
function rawJson(response: string): { status: number; body: Record<string, unknown> } {
  const [head, body] = response.split('\r\n\r\n')
  assert.match(head, /content-type: application\/json/i)
  assert.match(head, /x-content-type-options: nosniff/i)
  return { status: Number(head.split(' ')[1]), body: JSON.parse(body) }
}

function assertErrorShape(res: { headers: Headers; body: unknown; text: string }) {
  assert.match(res.headers.get('content-type') ?? '', /application\/json/, res.text)
  const body = res.body as Record<string, unknown>
  assert.equal(typeof body.error, 'string', res.text)
  assert.equal(typeof body.message, 'string', res.text)
  assert.equal(body.stack, undefined)
}

describe('ill-formed Unicode in any text field', () => {
  const lone = ['\ud800', 'a\ud800b', '\udfff', 'ok\udc00']

  test('when a lone surrogate comes in any text field of any route, then 422 naming the field, and nothing is written', async () => {
    const teacher = await signUp(base, 'correct horse battery', { firstName: 'Ana', lastName: 'Sousa' })
    const [unit] = await db.sql<{ id: number }[]>`select id from course_units order by id limit 1`
    const sheet = await request(base, 'POST', '/api/attendance/sheet/new', {
      json: { courseUnit: unit.id },
      headers: teacher.bearer
    })
    assert.equal(sheet.status, 201)
    const sheetId = sheet.body.attendanceId as string
    const cases: Array<
      [method: string, path: string, body: (text: string) => Record<string, unknown>, field: string, auth?: boolean]
    > = [
      ['POST', '/clientes/1/transacoes', (text) => ({ valor: 1, tipo: 'c', descricao: text }), 'descricao'],
      ['POST', '/increment', (text) => ({ key: text, value: 1 }), 'key', true],
      ['POST', '/api/users', (text) => ({ email: 'x@example.com', password: `password${text}` }), 'password'],
      [
        'POST',
        '/api/users',
        (text) => ({ email: 'y@example.com', password: 'password', firstName: text }),
        'firstName'
      ],
      [
        'POST',
        '/api/users',
        (text) => ({ email: 'z@example.com', password: 'password', lastName: `Name ${text}` }),
        'lastName'
      ],
      [
        'POST',
        '/api/sessions',
        (text) => ({ email: teacher.email, password: `${teacher.password}${text}` }),
        'password'
      ],
      ['PATCH', '/api/users/me', (text) => ({ firstName: `Ana ${text}` }), 'firstName', true],
      ['PATCH', '/api/users/me', (text) => ({ lastName: text }), 'lastName', true],
      [
        'PUT',
        '/api/users/me/password',
        (text) => ({ currentPassword: teacher.password, newPassword: `new password ${text}` }),
        'newPassword',
        true
      ],
      [
        'POST',
        '/api/attendance/sheet/new',
        (text) => ({ courseUnit: unit.id, summary: `TP ${text}` }),
        'summary',
        true
      ],
      [
        'POST',
        `/api/attendance/sheet/${sheetId}/student/registration`,
        (text) => ({ nmec: 12345, name: `Student ${text}` }),
        'name'
      ]
    ]
    const stored = await storedState()

    for (const [method, path, body, field, auth] of cases) {
      for (const text of lone) {
        const res = await request(base, method, path, { json: body(text), headers: auth ? teacher.bearer : {} })

        assert.equal(res.status, 422, `${method} ${path} ${field}=${JSON.stringify(text)}: ${res.text}`)
        assertErrorShape(res)
        assert.ok(
          res.body.details.some((detail: string) => detail.startsWith(`${field}:`)),
          res.text
        )
      }
    }
    assert.deepEqual(await storedState(), stored)
  })

  test('when text is well formed, then astral characters (a surrogate pair) are kept as sent', async () => {
    const res = await request(base, 'POST', '/clientes/2/transacoes', {
      json: { valor: 1, tipo: 'c', descricao: 'pão 🍞' }
    })
    assert.equal(res.status, 200)
    const [row] = await db.sql`select descricao from transacoes where cliente_id = 2 order by id desc limit 1`
    assert.equal(row.descricao, 'pão 🍞')
  })
})

describe('HEAD', () => {
  test('when HEAD comes for any API route, then nothing is written: the cluster counter does not advance and no session is touched', async () => {
    const user = await signUp(base)
    await db.sql`update sessions set last_used_at = now() - interval '10 minutes'`
    const [{ counter: before }] = await db.sql`select value::int as counter from counters where name = 'requests'`
    const [{ lastUsed }] = await db.sql`select max(last_used_at) as "lastUsed" from sessions`
    const routes = [
      '/counter',
      '/api/sessions',
      '/api/users/me',
      '/clientes/1/extrato',
      '/increment/some-key',
      '/api/course_units/my'
    ]

    for (const route of routes) {
      for (let attempt = 0; attempt < 5; attempt++) {
        const res = await fetch(new URL(route, base), { method: 'HEAD', headers: user.bearer })
        assert.ok(res.status === 404 || res.status === 405, `HEAD ${route}: ${res.status}`)
      }
    }

    const [{ counter: afterHeads }] = await db.sql`select value::int as counter from counters where name = 'requests'`
    assert.equal(afterHeads, before)
    const [{ lastUsed: lastUsedAfter }] = await db.sql`select max(last_used_at) as "lastUsed" from sessions`
    assert.deepEqual(lastUsedAfter, lastUsed)
  })

  test('when HEAD comes for a probe, then it is answered like GET without a body', async () => {
    const res = await fetch(new URL('/health', base), { method: 'HEAD' })
    assert.equal(res.status, 200)
    assert.equal(await res.text(), '')
  })
})

describe("the framework's own errors", () => {
  test('when the path is not valid percent-encoding, then 400 in the JSON error shape', async () => {
    for (const path of ['/clientes/%E0%A4%A/extrato', '/increment/%ED%A0%80', '/api/attendance/sheet/%zz']) {
      const res = await request(base, 'GET', path)
      assert.equal(res.status, 400, path)
      assertErrorShape(res)
      assert.equal(res.body.error, 'bad-url')
    }
  })

  test('when a path parameter is over the length limit, then 404 in the JSON error shape, as for any unknown id', async () => {
    for (const path of [
      `/api/attendance/sheet/${'a'.repeat(1500)}`,
      `/clientes/${'9'.repeat(1500)}/extrato`,
      `/increment/${'k'.repeat(5000)}`
    ]) {
      const res = await request(base, 'GET', path)
      assert.equal(res.status, 404, path.slice(0, 40))
      assertErrorShape(res)
      assert.equal(res.body.error, 'not-found')
    }
  })

  test('when the headers are too large, then 431 in the JSON error shape', async () => {
    const response = await rawExchange(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
    const { status, body } = rawJson(response)
    assert.equal(status, 431)
    assert.equal(body.error, 'headers-too-large')
  })

  test('when the request cannot be parsed, then 400 in the JSON error shape and the connection closes', async () => {
    const malformed = [
      'GARBAGE\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n',
      'POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n',
      'POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello',
      'GET / HTTP/9.9\r\n\r\n'
    ]
    for (const bytes of malformed) {
      const { status, body } = rawJson(await rawExchange(bytes))
      assert.equal(status, 400, JSON.stringify(bytes))
      assert.equal(body.error, 'bad-request')
      assert.equal(typeof body.message, 'string')
    }
    const res = await request(base, 'GET', '/health')
    assert.equal(res.status, 200, 'the process is still serving')
  })

  test('when HTTP/1.1 comes without Host, an unknown Expect or a CONNECT, then 400, 417 or 405 in the JSON error shape', async () => {
    const cases: Array<[bytes: string, status: number, code: string]> = [
      ['GET /health HTTP/1.1\r\n\r\n', 400, 'bad-request'],
      ['GET /health HTTP/1.1\r\nHost: x\r\nExpect: 999-nope\r\n\r\n', 417, 'expectation-failed'],
      ['CONNECT 127.0.0.1:5432 HTTP/1.1\r\nHost: 127.0.0.1:5432\r\n\r\n', 405, 'method-not-allowed']
    ]
    for (const [bytes, expected, code] of cases) {
      const { status, body } = rawJson(await rawExchange(bytes))
      assert.equal(status, expected, JSON.stringify(bytes))
      assert.equal(body.error, code)
    }
  })

  test('when a body nests thousands of levels deep, then a 4xx, never a 500', async () => {
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`
    const res = await request(base, 'POST', '/clientes/1/transacoes', {
      body: `{"deep":${deep},"valor":1,"tipo":"c","descricao":"a\\ud800"}`,
      headers: { 'content-type': 'application/json' }
    })
    assert.ok(res.status >= 400 && res.status < 500, `${res.status} ${res.text.slice(0, 200)}`)
    assertErrorShape(res)
  })
})

describe('security headers', () => {
  test('when any response goes out (JSON, error, page, documentation), then it carries nosniff', async () => {
    for (const path of [
      '/health',
      '/clientes/1/extrato',
      '/no/such/route',
      '/clientes/abc/extrato',
      '/documentation/',
      '/openapi.json'
    ]) {
      const res = await fetch(new URL(path, base))
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path)
    }
  })

  test('when Swagger UI or a page is served, then its CSP forbids framing', async () => {
    const res = await fetch(new URL('/documentation/', base))
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /text\/html/)
    assert.match(res.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/)
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/)
  })

  test('when the browser came over HTTPS (through the trusted proxy), then HSTS; over plain HTTP, none', async () => {
    const https = await fetch(new URL('/health', base), { headers: { 'x-forwarded-proto': 'https' } })
    const plain = await fetch(new URL('/health', base))
    assert.match(https.headers.get('strict-transport-security') ?? '', /max-age=\d+/)
    assert.equal(plain.headers.get('strict-transport-security'), null)
  })

  test('when an answer carries or makes a session, then Cache-Control: no-store', async () => {
    const user = await signUp(base)
    const login = await request(base, 'POST', '/api/sessions', { json: { email: user.email, password: user.password } })
    const me = await request(base, 'GET', '/api/users/me', { headers: user.bearer })
    const byCookie = await request(base, 'GET', '/api/sessions', { headers: user.cookie })
    for (const res of [login, me, byCookie]) assert.equal(res.headers.get('cache-control'), 'no-store')
  })
})

describe('stack traces', () => {
  const noShedding = { OVERLOAD_EVENT_LOOP_DELAY_MS: '0', OVERLOAD_MAX_IN_FLIGHT: '0', OVERLOAD_DATABASE_WAIT_MS: '0' }

  test('when NODE_ENV is not set at all and a request fails inside the server, then the 500 carries no stack; only an explicit development mode shows one', async () => {
    await db.sql`create function refuse_stack() returns trigger language plpgsql as $$
      begin raise exception 'failure inside the server'; end $$`
    await db.sql`create trigger refuse_stack before insert on transacoes
      for each row when (new.descricao = 'stack') execute function refuse_stack()`
    const failing = { json: { valor: 5, tipo: 'c', descricao: 'stack' } }
    // Shedding off: these apps share the test runner's event loop, which a loaded machine delays.
    const unset = await buildApp({ config: loadConfig({ LOG_LEVEL: 'silent', ...noShedding }), sql: db.sql })
    const development = await buildApp({
      config: loadConfig({ LOG_LEVEL: 'silent', NODE_ENV: 'development', ...noShedding }),
      sql: db.sql
    })
    try {
      const defaultMode = await unset.inject({ method: 'POST', url: '/clientes/3/transacoes', payload: failing.json })
      const asked = await development.inject({ method: 'POST', url: '/clientes/3/transacoes', payload: failing.json })

      assert.equal(defaultMode.statusCode, 500)
      assert.deepEqual(defaultMode.json(), { error: 'internal', message: 'internal server error' })
      assert.equal(asked.statusCode, 500)
      assert.match(asked.json().stack, /failure inside the server/)
    } finally {
      await unset.close()
      await development.close()
    }
  })
})
