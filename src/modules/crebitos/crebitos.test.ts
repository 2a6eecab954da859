import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { createDatabase, type TestDatabase } from '../../../test/helpers/database.js'
import { client, request } from '../../../test/helpers/http.js'
import { startApp } from '../../../test/helpers/servers.js'
import { until } from '../../../test/helpers/wait.js'

let db: TestDatabase
let app: FastifyInstance
let api: ReturnType<typeof client>
let base: string
let nextClientId = 1000

/** A client row of the test's own, so no test depends on another's history. */
async function createClient(limite = 1000, saldo = 0): Promise<number> {
  const id = nextClientId++
  await db.sql`insert into clientes (id, limite, saldo) values (${id}, ${limite}, ${saldo})`
  return id
}

async function storedTransactions(id: number) {
  return [...(await db.sql`select valor, tipo, descricao from transacoes where cliente_id = ${id} order by id`)]
}

const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/

before(async () => {
  db = await createDatabase({ migrated: true })
  ;({ url: base, app } = await startApp(db.sql, { BODY_LIMIT_BYTES: '4096' }))
  api = client(base)
})

after(async () => {
  await app.close()
  await db.drop()
})

describe('seeded clients', () => {
  test('clients 1 to 5 exist with their limits and a zero balance', async () => {
    const limits = [100000, 80000, 1000000, 10000000, 500000]
    for (const [index, limite] of limits.entries()) {
      const res = await api.get(`/clientes/${index + 1}/extrato`)
      assert.equal(res.status, 200)
      assert.equal(res.body.saldo.total, 0)
      assert.equal(res.body.saldo.limite, limite)
      assert.deepEqual(res.body.ultimas_transacoes, [])
    }
  })

  test('client 6 does not exist: 404 on both routes, and nothing is written', async () => {
    const statement = await api.get('/clientes/6/extrato')
    const transaction = await api.post('/clientes/6/transacoes', { valor: 1, tipo: 'c', descricao: 'x' })

    assert.equal(statement.status, 404)
    assert.equal(transaction.status, 404)
    assert.equal(transaction.body.error, 'not-found')
    assert.deepEqual(await storedTransactions(6), [])
  })
})

describe('POST /clientes/:id/transacoes', () => {
  test('a credit raises the balance and answers limite and saldo', async () => {
    const id = await createClient(1000)

    const res = await api.post(`/clientes/${id}/transacoes`, { valor: 250, tipo: 'c', descricao: 'deposito' })

    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { limite: 1000, saldo: 250 })
    assert.deepEqual(await storedTransactions(id), [{ valor: 250, tipo: 'c', descricao: 'deposito' }])
  })

  test('a debit down to exactly -limite is accepted', async () => {
    const id = await createClient(1000)

    const res = await api.post(`/clientes/${id}/transacoes`, { valor: 1000, tipo: 'd', descricao: 'all in' })

    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { limite: 1000, saldo: -1000 })
  })

  test('a debit past the limit gets 422 and writes nothing', async () => {
    const id = await createClient(1000)

    const res = await api.post(`/clientes/${id}/transacoes`, { valor: 1001, tipo: 'd', descricao: 'too much' })

    assert.equal(res.status, 422)
    assert.equal(res.body.error, 'limit-exceeded')
    const statement = await api.get(`/clientes/${id}/extrato`)
    assert.equal(statement.body.saldo.total, 0)
    assert.deepEqual(statement.body.ultimas_transacoes, [])
    assert.deepEqual(await storedTransactions(id), [])
  })

  test('a credit that would overflow the balance gets 422, not 500, and writes nothing', async () => {
    const id = await createClient(0, 2147483000)

    const res = await api.post(`/clientes/${id}/transacoes`, { valor: 1000, tipo: 'c', descricao: 'overflow' })

    assert.equal(res.status, 422)
    assert.deepEqual(await storedTransactions(id), [])
  })

  const invalidBodies: Array<[string, unknown]> = [
    ['valor missing', { tipo: 'c', descricao: 'x' }],
    ['valor null', { valor: null, tipo: 'c', descricao: 'x' }],
    ['valor a string', { valor: '10', tipo: 'c', descricao: 'x' }],
    ['valor zero', { valor: 0, tipo: 'c', descricao: 'x' }],
    ['valor negative', { valor: -5, tipo: 'c', descricao: 'x' }],
    ['valor past 32 bits', { valor: 2147483648, tipo: 'c', descricao: 'x' }],
    ['tipo missing', { valor: 1, descricao: 'x' }],
    ['tipo null', { valor: 1, tipo: null, descricao: 'x' }],
    ['tipo other', { valor: 1, tipo: 'x', descricao: 'x' }],
    ['tipo upper case', { valor: 1, tipo: 'C', descricao: 'x' }],
    ['descricao missing', { valor: 1, tipo: 'c' }],
    ['descricao null', { valor: 1, tipo: 'c', descricao: null }],
    ['descricao empty', { valor: 1, tipo: 'c', descricao: '' }],
    ['descricao 11 characters', { valor: 1, tipo: 'c', descricao: '12345678901' }],
    ['descricao a number', { valor: 1, tipo: 'c', descricao: 5 }],
    ['descricao with a NUL character', { valor: 1, tipo: 'c', descricao: 'a\u0000b' }],
    ['body an array', [{ valor: 1, tipo: 'c', descricao: 'x' }]],
    ['body a string', 'hello']
  ]
  for (const [name, body] of invalidBodies) {
    test(`${name}: 422 with a JSON error, nothing written`, async () => {
      const id = await createClient()

      const res = await api.post(`/clientes/${id}/transacoes`, body)

      assert.equal(res.status, 422, res.text)
      assert.equal(res.body.error, 'invalid-input')
      assert.ok(Array.isArray(res.body.details) && res.body.details.length > 0)
      assert.deepEqual(await storedTransactions(id), [])
    })
  }

  test('a non-integer valor gets 400 or 422 and writes nothing', async () => {
    const id = await createClient()

    const res = await api.post(`/clientes/${id}/transacoes`, { valor: 1.2, tipo: 'd', descricao: 'devolve' })

    assert.ok([400, 422].includes(res.status), `status ${res.status}`)
    assert.deepEqual(await storedTransactions(id), [])
  })

  test('every invalid field is named in the error details', async () => {
    const id = await createClient()

    const res = await api.post(`/clientes/${id}/transacoes`, { valor: 1.5, tipo: 'z', descricao: '' })

    assert.equal(res.status, 422)
    const fields = res.body.details.map((detail: string) => detail.split(':')[0])
    assert.deepEqual(fields.sort(), ['descricao', 'tipo', 'valor'])
  })

  test('a 10-character descricao with non-ASCII text is stored as sent', async () => {
    const id = await createClient()

    const res = await api.post(`/clientes/${id}/transacoes`, { valor: 5, tipo: 'c', descricao: 'ação ünï 😀' })

    assert.equal(res.status, 200)
    assert.deepEqual(await storedTransactions(id), [{ valor: 5, tipo: 'c', descricao: 'ação ünï 😀' }])
  })

  test('malformed JSON gets 400 with a JSON error', async () => {
    const res = await request(base, 'POST', '/clientes/1/transacoes', {
      body: '{"valor": 1,',
      headers: { 'content-type': 'application/json' }
    })

    assert.equal(res.status, 400)
    assert.equal(res.body.error, 'malformed-json')
  })

  test('a body that is not JSON gets 415', async () => {
    const res = await request(base, 'POST', '/clientes/1/transacoes', {
      body: 'valor=1&tipo=c&descricao=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded' }
    })

    assert.equal(res.status, 415)
    assert.equal(res.body.error, 'unsupported-media-type')
  })

  // A browser's form or fetch() may send text/plain to another site without a CORS preflight: a JSON
  // body under it must never be read as a request, whatever the route.
  for (const type of ['text/plain', 'text/plain;charset=UTF-8']) {
    test(`a JSON body sent as ${type} gets 415 and writes nothing`, async () => {
      const id = await createClient()

      const res = await request(base, 'POST', `/clientes/${id}/transacoes`, {
        body: JSON.stringify({ valor: 1, tipo: 'c', descricao: 'x' }),
        headers: { 'content-type': type }
      })

      assert.equal(res.status, 415)
      assert.equal(res.body.error, 'unsupported-media-type')
      assert.deepEqual(await storedTransactions(id), [])
    })
  }

  test('a body over the size limit gets 413', async () => {
    const res = await api.post('/clientes/1/transacoes', { valor: 1, tipo: 'c', descricao: 'x', pad: 'x'.repeat(5000) })

    assert.equal(res.status, 413)
    assert.equal(res.body.error, 'payload-too-large')
  })
})

describe('client ids that are not clients', () => {
  for (const id of ['abc', '0', '-1', '1.5', '99999999999', '2147483648', '1e3', '%00']) {
    test(`id ${JSON.stringify(id)} gets 404 or 422 on both routes, never 500`, async () => {
      const statement = await api.get(`/clientes/${id}/extrato`)
      const transaction = await api.post(`/clientes/${id}/transacoes`, { valor: 1, tipo: 'c', descricao: 'x' })

      assert.ok([404, 422].includes(statement.status), `extrato ${statement.status}`)
      assert.ok([404, 422].includes(transaction.status), `transacoes ${transaction.status}`)
      assert.equal(typeof transaction.body.error, 'string')
    })
  }
})

describe('client ids and the contract', () => {
  // The contract says unknown client → 404: a well-formed id names no client whatever its length, up
  // to the 1000 characters the router lets through (a longer segment is a 404 before any route runs).
  for (const id of ['12345678901', '99999999999', '2147483648', '9'.repeat(20), `1${'0'.repeat(999)}`]) {
    test(`a positive decimal id of ${id.length} digits that names no client gets 404 on both routes, nothing written`, async () => {
      const [{ count: before }] = await db.sql`select count(*)::int from transacoes`

      const statement = await api.get(`/clientes/${id}/extrato`)
      const transaction = await api.post(`/clientes/${id}/transacoes`, { valor: 1, tipo: 'c', descricao: 'x' })

      assert.equal(statement.status, 404)
      assert.equal(statement.body.error, 'not-found')
      assert.equal(transaction.status, 404)
      assert.equal(transaction.body.error, 'not-found')
      const [{ count: after }] = await db.sql`select count(*)::int from transacoes`
      assert.equal(after, before)
    })
  }

  for (const id of ['abc', '0', '1e3', '-1', '1.5', '01', '0x10']) {
    test(`id ${JSON.stringify(id)} is not a positive decimal integer: 422 on both routes`, async () => {
      const statement = await api.get(`/clientes/${id}/extrato`)
      const transaction = await api.post(`/clientes/${id}/transacoes`, { valor: 1, tipo: 'c', descricao: 'x' })

      assert.equal(statement.status, 422)
      assert.equal(statement.body.error, 'invalid-input')
      assert.equal(transaction.status, 422)
      assert.equal(transaction.body.error, 'invalid-input')
    })
  }
})

describe('a burst on one client', () => {
  let second: { url: string; app: FastifyInstance }
  before(async () => {
    second = await startApp(db.sql, { BODY_LIMIT_BYTES: '4096' })
  })
  after(async () => {
    await second.app.close()
  })

  test('60 transactions at once through two replicas: each answer is a step of one serial history, no overdraft, and they commit in fewer transactions than requests', async () => {
    const limite = 500
    const id = await createClient(limite)
    const sent = Array.from({ length: 60 }, (_, n) => ({
      valor: 20 + (n % 7) * 13,
      tipo: n % 3 === 0 ? 'c' : 'd',
      descricao: `burst ${n}`
    }))

    const answers = await Promise.all(
      sent.map((body, n) => request(n % 2 ? second.url : base, 'POST', `/clientes/${id}/transacoes`, { json: body }))
    )

    for (const res of answers) assert.ok(res.status === 200 || res.status === 422, `${res.status} ${res.text}`)
    const accepted = answers.filter((res) => res.status === 200)
    assert.ok(accepted.length > 0 && accepted.length < sent.length, 'some debits fit, some do not')
    const rows = await db.sql<{ valor: number; tipo: string; descricao: string; tx: string }[]>`
      select valor, tipo, descricao, xmin::text as tx from transacoes where cliente_id = ${id} order by id`
    assert.equal(rows.length, accepted.length, 'one stored row per acknowledged transaction')
    let saldo = 0
    const history: number[] = []
    for (const row of rows) {
      saldo += row.tipo === 'c' ? row.valor : -row.valor
      assert.ok(saldo >= -limite, `the balance never goes below -limite (${saldo})`)
      history.push(saldo)
    }
    assert.deepEqual(
      accepted.map((res) => res.body.saldo as number).sort((x, y) => x - y),
      [...history].sort((x, y) => x - y),
      'every acknowledged balance is the balance right after its own row in the stored order'
    )
    const [{ total }] = await db.sql<{ total: number }[]>`select saldo as total from clientes where id = ${id}`
    assert.equal(total, saldo)
    const commits = new Set(rows.map((row) => row.tx)).size
    assert.ok(commits < rows.length, `${rows.length} rows in ${commits} transactions: a burst shares commits`)
  })

  for (const statementsPerClient of [1, 3]) {
    test(`with the client's row locked elsewhere, CREBITOS_STATEMENTS_PER_CLIENT=${statementsPerClient} statements wait inside PostgreSQL and the rest wait in the replica; all apply once the lock goes`, async () => {
      const replica = await startApp(db.sql, { CREBITOS_STATEMENTS_PER_CLIENT: String(statementsPerClient) })
      try {
        const id = await createClient()
        const release = await db.holdLock((tx) => tx`select 1 from clientes where id = ${id} for update`)
        const waitingInPostgres = async () => {
          const [{ waiting }] = await db.sql<{ waiting: number }[]>`
            select count(*)::int as waiting from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'`
          return waiting
        }
        const answers = Promise.all(
          Array.from({ length: 10 }, (_, n) =>
            request(replica.url, 'POST', `/clientes/${id}/transacoes`, {
              json: { valor: n + 1, tipo: 'c', descricao: `held ${n}` }
            })
          )
        )
        await until(
          async () => (await waitingInPostgres()) >= statementsPerClient,
          'the statements to wait on the lock',
          5000
        )
        await sleep(200)
        const waiting = await waitingInPostgres()
        await release()

        assert.equal(waiting, statementsPerClient)
        for (const res of await answers) assert.equal(res.status, 200, res.text)
        const [{ saldo }] = await db.sql<{ saldo: number }[]>`select saldo from clientes where id = ${id}`
        assert.equal(saldo, 55)
        assert.equal((await storedTransactions(id)).length, 10)
      } finally {
        await replica.app.close()
      }
    })
  }

  test('a credit that would overflow within a burst gets 422 and the others are applied', async () => {
    const id = await createClient(0, 2147483000)
    const credits = [100, 100, 1000, 100, 100, 100]

    const answers = await Promise.all(
      credits.map((valor, n) =>
        request(base, 'POST', `/clientes/${id}/transacoes`, { json: { valor, tipo: 'c', descricao: `c${n}` } })
      )
    )

    assert.deepEqual(
      answers.map((res) => res.status),
      [200, 200, 422, 200, 200, 200]
    )
    const [{ total }] = await db.sql<{ total: number }[]>`select saldo as total from clientes where id = ${id}`
    assert.equal(total, 2147483500)
    assert.equal((await storedTransactions(id)).length, 5)
  })

  test('a burst on a client that does not exist gets 404 for every request and writes nothing', async () => {
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, n) =>
        request(n % 2 ? second.url : base, 'POST', '/clientes/999999/transacoes', {
          json: { valor: 1, tipo: 'c', descricao: 'ghost' }
        })
      )
    )

    for (const res of answers) assert.equal(res.status, 404, res.text)
    assert.deepEqual(await storedTransactions(999999), [])
  })
})

describe('GET /clientes/:id/extrato', () => {
  test('lists at most ten transactions, newest first, with ISO-8601 UTC times', async () => {
    const id = await createClient(100000)
    for (let n = 1; n <= 12; n++) {
      const res = await api.post(`/clientes/${id}/transacoes`, {
        valor: n,
        tipo: n % 3 ? 'c' : 'd',
        descricao: `t${n}`
      })
      assert.equal(res.status, 200)
    }

    const res = await api.get(`/clientes/${id}/extrato`)

    assert.equal(res.status, 200)
    assert.match(res.body.saldo.data_extrato, iso)
    assert.equal(res.body.saldo.limite, 100000)
    const expectedTotal = [...Array(12).keys()].map((i) => i + 1).reduce((sum, n) => sum + (n % 3 ? n : -n), 0)
    assert.equal(res.body.saldo.total, expectedTotal)
    const listed = res.body.ultimas_transacoes
    assert.deepEqual(
      listed.map((t: { descricao: string }) => t.descricao),
      ['t12', 't11', 't10', 't9', 't8', 't7', 't6', 't5', 't4', 't3']
    )
    for (const t of listed) {
      assert.deepEqual(Object.keys(t).sort(), ['descricao', 'realizada_em', 'tipo', 'valor'])
      assert.match(t.realizada_em, iso)
    }
    const times = listed.map((t: { realizada_em: string }) => Date.parse(t.realizada_em))
    assert.deepEqual(
      times,
      [...times].sort((a, b) => b - a)
    )
  })
})

describe('platform', () => {
  test('an unknown route gets a JSON 404', async () => {
    const res = await api.get('/nope')

    assert.equal(res.status, 404)
    assert.equal(res.body.error, 'not-found')
  })

  test('/health and /ready answer 200 while the database is up', async () => {
    assert.equal((await api.get('/health')).status, 200)
    const ready = await api.get('/ready')
    assert.equal(ready.status, 200)
    assert.equal(ready.body.database, 'up')
  })
})
