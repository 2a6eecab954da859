import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { request, type Response } from './helpers/http.js'
import { inWaves } from './helpers/load.js'
import { spawnServer, type ServerProcess } from './helpers/servers.js'

// Two API processes on one database: whatever keeps the balances right has to live in PostgreSQL.
let db: TestDatabase
let servers: ServerProcess[]
const limits: Record<number, number> = { 1: 100000, 2: 80000, 3: 1000000, 4: 10000000, 5: 500000 }

/** Round robin over the replicas, like the load balancer. */
let turn = 0
function send(method: string, path: string, json?: unknown): Promise<Response> {
  const server = servers[turn++ % servers.length]
  return request(server.url, method, path, { json })
}

before(async () => {
  db = await createDatabase()
  servers = await Promise.all([1, 2].map(() => spawnServer('serve', { DATABASE_URL: db.url })))
})

after(async () => {
  await Promise.all(servers.map((server) => server.stop()))
  await db.drop()
})

describe('when many replicas move one balance at once', () => {
  test('25 simultaneous debits of 1 leave exactly -25, then 25 credits leave 0', async () => {
    const debits = await Promise.all(
      Array.from({ length: 25 }, () =>
        send('POST', '/clientes/1/transacoes', { valor: 1, tipo: 'd', descricao: 'debit' })
      )
    )
    assert.deepEqual(
      debits.map((res) => res.status),
      Array(25).fill(200)
    )
    assert.equal((await send('GET', '/clientes/1/extrato')).body.saldo.total, -25)

    const credits = await Promise.all(
      Array.from({ length: 25 }, () =>
        send('POST', '/clientes/1/transacoes', { valor: 1, tipo: 'c', descricao: 'credit' })
      )
    )
    assert.deepEqual(
      credits.map((res) => res.status),
      Array(25).fill(200)
    )

    assert.equal((await send('GET', '/clientes/1/extrato')).body.saldo.total, 0)
    const [stored] =
      await db.sql`select saldo, (select count(*)::int from transacoes where cliente_id = 1) as count from clientes where id = 1`
    assert.deepEqual({ ...stored }, { saldo: 0, count: 50 })
    const distinctBalances = new Set(debits.map((res) => res.body.saldo))
    assert.equal(distinctBalances.size, 25, 'each debit saw its own balance')
  })

  test('racing debits past a small limit: exactly the ones that fit succeed', async () => {
    await db.sql`insert into clientes (id, limite) values (100, 10)`

    const results = await Promise.all(
      Array.from({ length: 40 }, () =>
        send('POST', '/clientes/100/transacoes', { valor: 1, tipo: 'd', descricao: 'race' })
      )
    )

    const statuses = results.map((res) => res.status)
    assert.equal(statuses.filter((s) => s === 200).length, 10)
    assert.equal(statuses.filter((s) => s === 422).length, 30)
    const [row] =
      await db.sql`select saldo, (select count(*)::int from transacoes where cliente_id = 100) as count from clientes where id = 100`
    assert.deepEqual({ ...row }, { saldo: -10, count: 10 })
  })
})

describe('a randomized mixed history over the five clients', () => {
  interface Sent {
    client: number
    valor: number
    tipo: 'c' | 'd'
    descricao: string
    res: Response
  }
  interface Read {
    client: number
    res: Response
  }

  test('every 200 is one stored transaction, balances add up, limits hold, every statement is a snapshot', async () => {
    await db.sql`truncate transacoes`
    await db.sql`update clientes set saldo = 0`
    const random = seeded(20240201)
    const sent: Sent[] = []
    const reads: Read[] = []
    let serial = 0

    const operation = async () => {
      const client = 1 + Math.floor(random() * 5)
      if (random() < 0.15) {
        reads.push({ client, res: await send('GET', `/clientes/${client}/extrato`) })
        return
      }
      const tipo = random() < 0.6 ? 'd' : 'c'
      // Debits large enough that limits are hit often.
      const valor = 1 + Math.floor(random() * limits[client] * 0.3)
      const descricao = `h${(serial++).toString(36)}`
      const res = await send('POST', `/clientes/${client}/transacoes`, { valor, tipo, descricao })
      sent.push({ client, valor, tipo, descricao, res })
    }
    await inWaves(1200, 40, operation)

    for (const { res } of [...sent, ...reads])
      assert.ok([200, 422].includes(res.status), `unexpected ${res.status} ${res.text}`)
    const accepted = sent.filter((s) => s.res.status === 200)
    assert.ok(
      accepted.length > 300 && sent.length - accepted.length > 50,
      'the history mixes accepted and refused debits'
    )

    const stored = await db.sql<
      { id: string; cliente_id: number; valor: number; tipo: 'c' | 'd'; descricao: string }[]
    >`
      select id, cliente_id, valor, tipo, descricao from transacoes order by id`
    const storedByDescricao = new Map(stored.map((row) => [row.descricao, row]))
    assert.equal(stored.length, accepted.length, 'one stored transaction per 200, and none for a refusal')
    for (const s of accepted) {
      const row = storedByDescricao.get(s.descricao)
      assert.ok(row, `acknowledged ${s.descricao} is stored`)
      assert.deepEqual([row.cliente_id, row.valor, row.tipo], [s.client, s.valor, s.tipo])
    }

    // Per client, the stored order is the commit order (the row lock serialises them): replay it.
    const balanceAfter = new Map<string, number>()
    const history = new Map<number, string[]>()
    const balances = new Map<number, number>()
    for (const row of stored) {
      const balance = (balances.get(row.cliente_id) ?? 0) + (row.tipo === 'c' ? row.valor : -row.valor)
      assert.ok(balance >= -limits[row.cliente_id], 'no balance ever below -limite')
      balances.set(row.cliente_id, balance)
      balanceAfter.set(row.descricao, balance)
      history.set(row.cliente_id, [...(history.get(row.cliente_id) ?? []), row.descricao])
    }
    const finals = await db.sql<{ id: number; saldo: number }[]>`select id, saldo from clientes where id <= 5`
    for (const { id, saldo } of finals)
      assert.equal(saldo, balances.get(id) ?? 0, `client ${id} balance is the sum of its transactions`)

    for (const s of accepted) {
      assert.equal(s.res.body.saldo, balanceAfter.get(s.descricao), 'each 200 answers the balance right after it')
      assert.equal(s.res.body.limite, limits[s.client])
    }

    for (const { client, res } of reads) {
      const listed: string[] = res.body.ultimas_transacoes.map((t: { descricao: string }) => t.descricao)
      assert.ok(listed.length <= 10)
      const all = history.get(client) ?? []
      const newest = listed[0]
      const prefix = newest ? all.slice(0, all.indexOf(newest) + 1) : []
      assert.ok(!newest || prefix.length > 0, 'listed transactions were stored')
      assert.deepEqual(listed, prefix.slice(-10).reverse(), 'the list is the newest ten of one moment, newest first')
      const expected = newest ? balanceAfter.get(newest) : 0
      assert.equal(res.body.saldo.total, expected, 'the balance is the one of that same moment')
      assert.ok(res.body.saldo.total >= -limits[client])
    }
  })
})

/** A small deterministic generator so a failing history can be replayed. */
function seeded(seed: number) {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
