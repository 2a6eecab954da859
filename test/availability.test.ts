import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { after, before, describe, test } from 'node:test'
import postgres from 'postgres'
import { freePort } from './helpers/processes.js'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { request, type Response } from './helpers/http.js'
import { newDataDir, removeDataDir, startDatabaseCommand, type DatabaseProcess } from './helpers/postgres.js'
import { killGroup, logLines, type ServerProcess, spawnServer } from './helpers/servers.js'
import { until } from './helpers/wait.js'

// What a replica does when PostgreSQL goes away under it, and what production mode shows the world.

/** A request that must be answered, fast or slow, well before anything would call it hung. */
async function answered(base: string, method: string, route: string, json?: unknown): Promise<Response> {
  const res = await fetch(new URL(route, base), {
    method,
    headers: json === undefined ? {} : { 'content-type': 'application/json' },
    body: json === undefined ? undefined : JSON.stringify(json),
    signal: AbortSignal.timeout(10_000)
  })
  const text = await res.text()
  const isJson = res.headers.get('content-type')?.includes('json')
  return { status: res.status, headers: res.headers, text, body: isJson && text ? JSON.parse(text) : text }
}

describe('when the database goes down under a running replica', () => {
  let dataDir: string
  let port: number
  let database: DatabaseProcess
  let replica: ServerProcess
  const databaseCommands: ChildProcess[] = []

  before(async () => {
    dataDir = await newDataDir('tandem-availability-')
    port = await freePort()
    database = await startDatabaseCommand(dataDir, port)
    databaseCommands.push(database.child)
    replica = await spawnServer('serve', { DATABASE_URL: database.url })
  })

  after(async () => {
    for (const child of [replica?.child, ...databaseCommands]) {
      if (child && child.exitCode === null && child.signalCode === null) killGroup(child)
    }
    if (dataDir) await removeDataDir(dataDir)
  })

  test('then it answers 503 in JSON at once, stays up, and recovers by itself when the database is back', async () => {
    // Arrange: a working replica, then its database stopped.
    const beforeOutage = await answered(replica.url, 'POST', '/clientes/1/transacoes', {
      valor: 10,
      tipo: 'c',
      descricao: 'before'
    })
    assert.equal(beforeOutage.status, 200)
    assert.equal(await database.stop(), 0)

    // Act
    const ready = await answered(replica.url, 'GET', '/ready')
    const transaction = await answered(replica.url, 'POST', '/clientes/1/transacoes', {
      valor: 20,
      tipo: 'c',
      descricao: 'while down'
    })
    const statement = await answered(replica.url, 'GET', '/clientes/1/extrato')

    // Assert: quick JSON refusals, and the process still serving.
    assert.equal(ready.status, 503)
    assert.equal(ready.body.error, 'unavailable')
    assert.equal(ready.body.database, 'down')
    for (const res of [transaction, statement]) {
      assert.equal(res.status, 503)
      assert.match(res.headers.get('content-type') ?? '', /application\/json/)
      assert.equal(res.body.error, 'unavailable')
      assert.equal(typeof res.body.message, 'string')
      assert.equal(res.headers.get('retry-after'), '1')
    }
    assert.equal(replica.child.exitCode, null, 'the replica is still running')
    assert.equal((await answered(replica.url, 'GET', '/health')).status, 200)

    // Act: the database comes back on the same port and data directory; the replica is not restarted.
    database = await startDatabaseCommand(dataDir, port)
    databaseCommands.push(database.child)
    await until(async () => (await answered(replica.url, 'GET', '/ready')).status === 200, '/ready to turn 200 again')
    const afterOutage = await answered(replica.url, 'POST', '/clientes/1/transacoes', {
      valor: 30,
      tipo: 'c',
      descricao: 'after'
    })

    // Assert: the same process works again, and only the answered transactions are stored.
    assert.equal(afterOutage.status, 200)
    assert.deepEqual(afterOutage.body, { limite: 100000, saldo: 40 })
    assert.equal(replica.child.exitCode, null)
    const sql = postgres(database.url, { max: 1, onnotice: () => {} })
    try {
      const stored = await sql`select valor, descricao from transacoes where cliente_id = 1 order by id`
      assert.deepEqual(
        stored.map((row) => ({ ...row })),
        [
          { valor: 10, descricao: 'before' },
          { valor: 30, descricao: 'after' }
        ]
      )
    } finally {
      await sql.end({ timeout: 5 })
    }
    assert.equal(await replica.stop(), 0)
    assert.equal(await database.stop(), 0)
  })
})

describe('in production mode', () => {
  let db: TestDatabase
  let replica: ServerProcess

  before(async () => {
    db = await createDatabase()
    replica = await spawnServer('serve', { DATABASE_URL: db.url, NODE_ENV: 'production', LOG_LEVEL: 'info' })
  })

  after(async () => {
    if (replica) killGroup(replica.child)
    await db?.drop()
  })

  test('when a route does not exist, then 404 in JSON without a stack', async () => {
    const res = await request(replica.url, 'GET', '/no/such/route')

    assert.equal(res.status, 404)
    assert.equal(res.body.error, 'not-found')
    assert.equal(res.body.stack, undefined)
    assert.doesNotMatch(res.text, /\.(ts|js):\d+/)
  })

  test('when the body is invalid or not JSON at all, then a 4xx in JSON without a stack, and nothing is written', async () => {
    const invalid = await request(replica.url, 'POST', '/clientes/1/transacoes', {
      json: { valor: 1.5, tipo: 'x', descricao: '' }
    })
    const malformed = await request(replica.url, 'POST', '/clientes/1/transacoes', {
      body: '{"valor": 1,',
      headers: { 'content-type': 'application/json' }
    })

    for (const res of [invalid, malformed]) {
      assert.ok(res.status === 400 || res.status === 422, `a client error: ${res.status} ${res.text}`)
      assert.equal(typeof res.body.error, 'string')
      assert.equal(res.body.stack, undefined)
      assert.doesNotMatch(res.text, /\.(ts|js):\d+/)
    }
    const [{ count }] = await db.sql`select count(*)::int as count from transacoes where cliente_id = 1`
    assert.equal(count, 0)
  })

  test('when a request fails inside the server, then a bare 500 goes out, and the stack goes to the JSON log', async () => {
    // A statement that fails for reasons of the server's own, not the client's: a trigger raising.
    await db.sql`create function refuse_boom() returns trigger language plpgsql as $$
      begin raise exception 'boom from the test trigger'; end $$`
    await db.sql`create trigger refuse_boom before insert on transacoes
      for each row when (new.descricao = 'boom') execute function refuse_boom()`

    const res = await request(replica.url, 'POST', '/clientes/2/transacoes', {
      json: { valor: 5, tipo: 'c', descricao: 'boom' }
    })

    assert.equal(res.status, 500)
    assert.deepEqual(res.body, { error: 'internal', message: 'internal server error' })
    const [{ saldo }] = await db.sql`select saldo from clientes where id = 2`
    assert.equal(saldo, 0)
    let logged: Record<string, unknown> | undefined
    await until(
      () => {
        logged = logLines(replica.output()).find((line) => line.msg === 'request failed')
        return logged !== undefined
      },
      'the failure to be logged',
      10_000
    )
    assert.match(JSON.stringify(logged), /boom from the test trigger/)
    assert.match((logged!.err as { stack: string }).stack, /\n\s+at /, 'the log keeps the stack the client did not get')
  })

  test('when it logs, then every line it writes is a JSON record', async () => {
    await request(replica.url, 'GET', '/no/such/route')

    const lines = replica
      .output()
      .split('\n')
      .filter((line) => line.trim() !== '')
    assert.ok(lines.length > 0)
    for (const line of lines) {
      const record = JSON.parse(line)
      assert.equal(typeof record.level, 'number', line)
      assert.equal(typeof record.time, 'number', line)
      assert.equal(typeof record.msg, 'string', line)
    }
  })
})
