import assert from 'node:assert/strict'
import { randomInt, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { signUp } from './helpers/accounts.js'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { request, type Response } from './helpers/http.js'
import { pruneExpiredKeys } from '../src/platform/idempotency.js'
import { startApp } from './helpers/servers.js'

// Two apps on one database are two replicas: a retry may reach either.
let db: TestDatabase
let replicas: Array<{ url: string; app: FastifyInstance }>
let nextClientId = 5000

before(async () => {
  db = await createDatabase({ migrated: true, statementTimeoutMs: 5000, lockTimeoutMs: 1000 })
  replicas = await Promise.all([1, 2].map(() => startApp(db.sql, { TRUST_PROXY: '127.0.0.1' })))
})

after(async () => {
  await Promise.all(replicas.map(({ app }) => app.close()))
  await db.drop()
})

const on = (i: number) => replicas[i % 2].url
const keyed = (key: string, headers: Record<string, string> = {}) => ({ 'idempotency-key': key, ...headers })

async function createClient(limite = 1000, saldo = 0): Promise<number> {
  const id = nextClientId++
  await db.sql`insert into clientes (id, limite, saldo) values (${id}, ${limite}, ${saldo})`
  return id
}

async function stored(clientId: number) {
  const [client] = await db.sql<{ saldo: number }[]>`select saldo from clientes where id = ${clientId}`
  const [{ count }] = await db.sql<
    { count: number }[]
  >`select count(*)::int from transacoes where cliente_id = ${clientId}`
  return { saldo: client.saldo, transactions: count }
}

const transact = (i: number, clientId: number, body: unknown, headers: Record<string, string> = {}) =>
  request(on(i), 'POST', `/clientes/${clientId}/transacoes`, { json: body, headers })

/** The answer as a client sees it, for comparing a replay with the first. */
const seen = (res: Response) => ({ status: res.status, text: res.text })

describe('Idempotency-Key on POST /clientes/:id/transacoes', () => {
  test('a retry on the other replica replays the first answer byte for byte, marked replayed, and applies nothing again', async () => {
    const id = await createClient()
    const key = randomUUID()
    const body = { valor: 300, tipo: 'd', descricao: 'padaria' }

    const first = await transact(0, id, body, keyed(key))
    const retries = [await transact(1, id, body, keyed(key)), await transact(0, id, body, keyed(key))]

    assert.equal(first.status, 200)
    assert.equal(first.text, '{"limite":1000,"saldo":-300}')
    assert.equal(first.headers.get('idempotent-replayed'), null)
    for (const retry of retries) {
      assert.deepEqual(seen(retry), seen(first))
      assert.equal(retry.headers.get('idempotent-replayed'), 'true')
    }
    assert.deepEqual(await stored(id), { saldo: -300, transactions: 1 })
  })

  test('without the header nothing is deduplicated: the same request twice is two transactions', async () => {
    const id = await createClient()
    const body = { valor: 100, tipo: 'c', descricao: 'twice' }

    const answers = [await transact(0, id, body), await transact(1, id, body)]

    assert.deepEqual(
      answers.map((res) => res.status),
      [200, 200]
    )
    assert.equal(answers[1].headers.get('idempotent-replayed'), null)
    assert.deepEqual(await stored(id), { saldo: 200, transactions: 2 })
  })

  test('the same key with another body, or another client, is 422 idempotency-key-reused or its own key: nothing written twice', async () => {
    const id = await createClient()
    const other = await createClient()
    const key = randomUUID()

    const first = await transact(0, id, { valor: 10, tipo: 'c', descricao: 'first' }, keyed(key))
    const reused = await transact(1, id, { valor: 11, tipo: 'c', descricao: 'first' }, keyed(key))
    // Keys are scoped per client: another client's key of the same text is another key.
    const elsewhere = await transact(1, other, { valor: 10, tipo: 'c', descricao: 'first' }, keyed(key))

    assert.equal(first.status, 200)
    assert.equal(reused.status, 422)
    assert.equal(reused.body.error, 'idempotency-key-reused')
    assert.equal(elsewhere.status, 200)
    assert.equal(elsewhere.headers.get('idempotent-replayed'), null)
    assert.deepEqual(await stored(id), { saldo: 10, transactions: 1 })
    assert.deepEqual(await stored(other), { saldo: 10, transactions: 1 })
  })

  test('a refused debit replays its 422 even once a credit would let it through: the first answer is the answer', async () => {
    const id = await createClient(100)
    const key = randomUUID()
    const debit = { valor: 150, tipo: 'd', descricao: 'too much' }

    const first = await transact(0, id, debit, keyed(key))
    await transact(1, id, { valor: 100, tipo: 'c', descricao: 'top up' })
    const retry = await transact(1, id, debit, keyed(key))

    assert.equal(first.status, 422)
    assert.equal(first.body.error, 'limit-exceeded')
    assert.deepEqual(seen(retry), seen(first))
    assert.equal(retry.headers.get('idempotent-replayed'), 'true')
    assert.deepEqual(await stored(id), { saldo: 100, transactions: 1 })
  })

  test('concurrent duplicates over both replicas: applied once; every other answer is the same replay or 409 idempotency-key-in-use', async () => {
    const id = await createClient(0)
    const key = randomUUID()
    const body = { valor: 7, tipo: 'c', descricao: 'burst' }

    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => transact(i, id, body, keyed(key))))

    const fresh = answers.filter((res) => res.status === 200 && res.headers.get('idempotent-replayed') === null)
    assert.equal(fresh.length, 1, `statuses ${answers.map((res) => res.status)}`)
    for (const res of answers) {
      if (res.status === 409) assert.equal(res.body.error, 'idempotency-key-in-use')
      else assert.deepEqual(seen(res), seen(fresh[0]))
    }
    assert.deepEqual(await stored(id), { saldo: 7, transactions: 1 })
  })

  test('many keys at once on one client: each applied exactly once, the balance their sum', async () => {
    const id = await createClient(0)
    const keys = Array.from({ length: 30 }, () => randomUUID())
    const bodies = keys.map(() => ({ valor: randomInt(1, 1000), tipo: 'c', descricao: 'many' }))

    // Every key sent twice, on both replicas, all at once.
    const answers = await Promise.all(
      [...keys, ...keys].map((key, i) => transact(i, id, bodies[i % keys.length], keyed(key)))
    )

    assert.ok(
      answers.every((res) => res.status === 200 || res.status === 409),
      `statuses ${answers.map((res) => res.status)}`
    )
    const sum = bodies.reduce((total, body) => total + body.valor, 0)
    assert.deepEqual(await stored(id), { saldo: sum, transactions: keys.length })
  })

  test('a key that is not 1–255 visible ASCII characters is 422 and writes nothing', async () => {
    const id = await createClient()
    for (const key of ['x'.repeat(256), 'cl\u00e9', 'a b', '']) {
      const res = await transact(0, id, { valor: 1, tipo: 'c', descricao: 'bad key' }, keyed(key))
      assert.equal(res.status, 422, `key ${JSON.stringify(key)}`)
      assert.equal(res.body.error, 'invalid-input')
    }
    assert.deepEqual(await stored(id), { saldo: 0, transactions: 0 })
  })
})

describe('Idempotency-Key on POST /increment and /api/increment', () => {
  const add = (i: number, body: unknown, headers: Record<string, string>, path = '/increment') =>
    request(on(i), 'POST', path, { json: body, headers })
  const total = async (key: string) =>
    Number((await db.sql<{ value: string }[]>`select value from increments where key = ${key}`)[0]?.value ?? 0)

  test('a retry on the other replica replays the total of the first, byte for byte, and counts once', async () => {
    const user = await signUp(on(0))
    const key = `idem-${randomUUID()}`
    const idem = randomUUID()

    const first = await add(0, { key, value: 5 }, keyed(idem, user.bearer))
    await add(1, { key, value: 1 }, user.bearer)
    const retry = await add(1, { key, value: 5 }, keyed(idem, user.bearer))

    assert.equal(first.status, 200)
    assert.equal(first.text, `{"key":"${key}","value":5}`)
    assert.deepEqual(seen(retry), seen(first))
    assert.equal(retry.headers.get('idempotent-replayed'), 'true')
    assert.equal(await total(key), 6)
  })

  test('concurrent retries of many keys from both replicas, mixed with plain increments: every key counted once, every plain one counted', async () => {
    const user = await signUp(on(0))
    const key = `idem-${randomUUID()}`
    const keys = Array.from({ length: 20 }, () => randomUUID())

    const answers = await Promise.all([
      ...[...keys, ...keys, ...keys].map((idem, i) =>
        add(i, { key, value: 10 }, keyed(idem, user.bearer), i % 3 ? '/increment' : '/api/increment')
      ),
      ...Array.from({ length: 20 }, (_, i) => add(i, { key, value: 1 }, user.bearer))
    ])

    const statuses = answers.map((res) => res.status)
    assert.ok(
      statuses.every((status) => status === 200 || status === 409 || status === 422),
      `statuses ${statuses}`
    )
    // The same key on the two paths is two targets: the second path's use of a key is a reuse, never a second count.
    assert.equal(await total(key), 20 * 10 + 20)
  })

  test('keys are per user: two users with the same key both count; without a session it is 401 before anything', async () => {
    const [ana, rui] = await Promise.all([signUp(on(0)), signUp(on(1))])
    const key = `idem-${randomUUID()}`
    const idem = randomUUID()

    const answers = [
      await add(0, { key, value: 2 }, keyed(idem, ana.bearer)),
      await add(1, { key, value: 2 }, keyed(idem, rui.bearer)),
      await add(0, { key, value: 2 }, keyed(idem))
    ]

    assert.deepEqual(
      answers.map((res) => res.status),
      [200, 200, 401]
    )
    assert.equal(answers[1].headers.get('idempotent-replayed'), null)
    assert.equal(await total(key), 4)
  })

  test('the same key with another value is 422 idempotency-key-reused, and the total stays', async () => {
    const user = await signUp(on(0))
    const key = `idem-${randomUUID()}`
    const idem = randomUUID()

    await add(0, { key, value: 3 }, keyed(idem, user.bearer))
    const reused = await add(1, { key, value: 4 }, keyed(idem, user.bearer))

    assert.equal(reused.status, 422)
    assert.equal(reused.body.error, 'idempotency-key-reused')
    assert.equal(await total(key), 3)
  })
})

describe('Idempotency-Key on the attendance and account writes', () => {
  test('a retried sheet creation answers the same sheet and opens one', async () => {
    const teacher = await signUp(on(0))
    const idem = randomUUID()
    const body = { courseUnit: 0, summary: 'tp1' }

    const first = await request(on(0), 'POST', '/api/attendance/sheet/new', {
      json: body,
      headers: keyed(idem, teacher.bearer)
    })
    const retry = await request(on(1), 'POST', '/api/attendance/sheet/new', {
      json: body,
      headers: keyed(idem, teacher.bearer)
    })

    assert.equal(first.status, 201)
    assert.deepEqual(seen(retry), seen(first))
    assert.equal(retry.headers.get('idempotent-replayed'), 'true')
    const [{ count }] = await db.sql<
      { count: number }[]
    >`select count(*)::int from attendance_sheets where creator_id = ${teacher.userId}`
    assert.equal(count, 1)
  })

  test('a retried sign-in replays its 201 instead of 409 already-registered, and a repeat without the key is still 409', async () => {
    const teacher = await signUp(on(0))
    const sheet = await request(on(0), 'POST', '/api/attendance/sheet/new', {
      json: { courseUnit: 1 },
      headers: teacher.bearer
    })
    const path = `/api/attendance/sheet/${sheet.body.attendanceId}/student/registration`
    const student = { nmec: 98765, name: 'Maria Silva' }
    const idem = randomUUID()
    const from = { 'x-forwarded-for': `10.9.${randomInt(256)}.${randomInt(1, 255)}` }

    const first = await request(on(0), 'POST', path, { json: student, headers: keyed(idem, from) })
    const retry = await request(on(1), 'POST', path, { json: student, headers: keyed(idem, from) })
    // Another phone (address) with the same key is another key: a repeat, refused as one.
    const elsewhere = await request(on(1), 'POST', path, {
      json: student,
      headers: keyed(idem, { 'x-forwarded-for': '10.8.0.1' })
    })
    const again = await request(on(0), 'POST', path, { json: student, headers: from })

    assert.equal(first.status, 201)
    assert.deepEqual(seen(retry), seen(first))
    assert.equal(retry.headers.get('idempotent-replayed'), 'true')
    assert.equal(elsewhere.status, 409)
    assert.equal(elsewhere.body.error, 'already-registered')
    assert.equal(again.status, 409)
    const rows =
      await db.sql`select nmec from registrations r join attendance_sheets s on s.id = r.sheet_id where s.public_id = ${sheet.body.attendanceId}`
    assert.equal(rows.length, 1)
  })

  test('a refused sign-in on a closed sheet replays its 403 even after the sheet is opened again', async () => {
    const teacher = await signUp(on(0))
    const sheet = await request(on(0), 'POST', '/api/attendance/sheet/new', {
      json: { courseUnit: 1 },
      headers: teacher.bearer
    })
    const id = sheet.body.attendanceId
    const path = `/api/attendance/sheet/${id}/student/registration`
    await request(on(0), 'POST', `/api/attendance/sheet/${id}/status`, {
      json: { status: false },
      headers: teacher.bearer
    })
    const idem = randomUUID()
    const student = { nmec: 4242, name: 'Joao Costa' }

    const first = await request(on(0), 'POST', path, { json: student, headers: keyed(idem) })
    await request(on(0), 'POST', `/api/attendance/sheet/${id}/status`, {
      json: { status: true },
      headers: teacher.bearer
    })
    const retry = await request(on(1), 'POST', path, { json: student, headers: keyed(idem) })

    assert.equal(first.status, 403)
    assert.deepEqual(seen(retry), seen(first))
    const rows =
      await db.sql`select 1 from registrations r join attendance_sheets s on s.id = r.sheet_id where s.public_id = ${id}`
    assert.equal(rows.length, 0)
  })

  test('a retried registration answers the account it made, once; the password is stored in no key', async () => {
    const email = `idem-${randomUUID()}@example.com`
    const body = { email, password: 'correct horse battery', firstName: 'Ana', lastName: 'Sousa' }
    const idem = randomUUID()

    const first = await request(on(0), 'POST', '/api/users', { json: body, headers: keyed(idem) })
    const retry = await request(on(1), 'POST', '/api/users', { json: body, headers: keyed(idem) })
    const reused = await request(on(1), 'POST', '/api/users', {
      json: { ...body, firstName: 'Rui' },
      headers: keyed(idem)
    })

    assert.equal(first.status, 201)
    assert.deepEqual(seen(retry), seen(first))
    assert.equal(retry.headers.get('idempotent-replayed'), 'true')
    assert.equal(reused.status, 422)
    assert.equal(reused.body.error, 'idempotency-key-reused')
    const users = await db.sql`select id from users where email = ${email}`
    assert.equal(users.length, 1)
    const keys = await db.sql<{ body: string }[]>`select body from idempotency_keys where key = ${idem}`
    assert.equal(keys.length, 1)
    assert.ok(!keys[0].body.includes(body.password))
  })
})

describe('keys expire', () => {
  test('past IDEMPOTENCY_TTL_MS the same key is a new write, and the sweep deletes expired keys', async () => {
    const shortLived = await startApp(db.sql, { IDEMPOTENCY_TTL_MS: '1000' })
    try {
      const id = await createClient(0)
      const key = randomUUID()
      const body = { valor: 1, tipo: 'c', descricao: 'ttl' }

      const first = await request(shortLived.url, 'POST', `/clientes/${id}/transacoes`, {
        json: body,
        headers: keyed(key)
      })
      await sleep(1100)
      const later = await request(shortLived.url, 'POST', `/clientes/${id}/transacoes`, {
        json: body,
        headers: keyed(key)
      })
      await db.sql`update idempotency_keys set expires_at = now() - interval '1 second' where scope = ${`crebitos:${id}`}`
      const pruned = await pruneExpiredKeys(db.sql)

      assert.deepEqual([first.status, later.status], [200, 200])
      assert.equal(later.headers.get('idempotent-replayed'), null)
      assert.deepEqual(await stored(id), { saldo: 2, transactions: 2 })
      assert.ok(pruned >= 1)
      assert.deepEqual([...(await db.sql`select 1 from idempotency_keys where scope = ${`crebitos:${id}`}`)], [])
    } finally {
      await shortLived.app.close()
    }
  })
})

describe('the OpenAPI document', () => {
  test('documents Idempotency-Key on every write that takes it, and on no other route', async () => {
    const doc = (await request(on(0), 'GET', '/openapi.json')).body
    const takers = Object.entries(
      doc.paths as Record<string, Record<string, { parameters?: Array<{ in: string; name: string }> }>>
    )
      .flatMap(([path, methods]) =>
        Object.entries(methods)
          .filter(([, operation]) =>
            operation.parameters?.some((p) => p.in === 'header' && p.name === 'idempotency-key')
          )
          .map(([method]) => `${method.toUpperCase()} ${path}`)
      )
      .sort()

    assert.deepEqual(takers, [
      'POST /api/attendance/sheet/new',
      'POST /api/attendance/sheet/{id}/student/registration',
      'POST /api/increment',
      'POST /api/users',
      'POST /clientes/{id}/transacoes',
      'POST /increment'
    ])
  })
})
