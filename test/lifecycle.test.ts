import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { loadConfig } from '../src/config.js'
import { freePort } from './helpers/processes.js'
import { serve } from '../src/server.js'
import { createDatabase, quietLog, type TestDatabase } from './helpers/database.js'
import { request } from './helpers/http.js'
import { killGroup, logLines, spawnServer, testLimits, type ServerProcess } from './helpers/servers.js'
import { until } from './helpers/wait.js'

// Who stops a process: main.ts alone handles SIGTERM/SIGINT and exits; serve() hands back a handle
// that drains, so that it can run inside a process it does not own.

const databases: TestDatabase[] = []
const servers: ServerProcess[] = []

after(async () => {
  for (const { child } of servers) if (child.exitCode === null && child.signalCode === null) killGroup(child)
  for (const db of databases) await db.drop()
})

const signalHandlers = () => ['SIGTERM', 'SIGINT'].map((signal) => process.listenerCount(signal))

/** Resolves once a new connection to the URL fails: nobody accepts on it any more. */
const refused = (url: string) =>
  fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) }).then(
    () => false,
    () => true
  )

describe('when serve() runs in a process it does not own', () => {
  test('then it installs no signal handler and never exits: close() refuses new connections, answers the request in flight, and resolves', async () => {
    const db = await createDatabase()
    databases.push(db)
    const port = await freePort()
    const config = loadConfig({
      NODE_ENV: 'test',
      LOG_LEVEL: 'silent',
      ...testLimits,
      DATABASE_URL: db.url,
      PORT: String(port)
    })
    const url = `http://127.0.0.1:${port}`
    const handlersBefore = signalHandlers()
    const exit = process.exit
    process.exit = (code?: number | string | null) => assert.fail(`serve() called process.exit(${code})`)
    try {
      const server = await serve({ config, databaseUrl: config.databaseUrl!, log: quietLog, runMigrations: true })
      assert.deepEqual(signalHandlers(), handlersBefore, 'serve() leaves the signals to its caller')

      // A credit held in flight by a row lock the test keeps.
      const release = await db.holdLock((tx) => tx`select 1 from clientes where id = 1 for update`)
      const held = request(url, 'POST', '/clientes/1/transacoes', { json: { valor: 5, tipo: 'c', descricao: 'held' } })
      await until(async () => {
        const [{ waiting }] = await db.sql<{ waiting: number }[]>`
          select count(*)::int as waiting from pg_stat_activity
           where datname = current_database() and application_name = 'tandem' and wait_event_type = 'Lock'`
        return waiting === 1
      }, 'the credit to wait on the lock')

      const closed = server.close()
      assert.equal(server.close(), closed, 'a second close() is the first one')
      await until(() => refused(url), 'new connections to be refused while the held request drains')
      await release()

      assert.equal((await held).status, 200)
      await closed
      const [{ saldo }] = await db.sql<{ saldo: number }[]>`select saldo from clientes where id = 1`
      assert.equal(saldo, 5, 'the answered credit is stored')
    } finally {
      process.exit = exit
    }
  })
})

describe('when `serve` gets SIGTERM while it still waits for its database', () => {
  test('then it exits 0 at once, saying so, rather than waiting out DATABASE_WAIT_MS', async () => {
    const nothing = `postgres://tandem:secret@127.0.0.1:${await freePort()}/tandem`
    const replica = await spawnServer(
      'serve',
      { DATABASE_URL: nothing, DATABASE_WAIT_MS: '60000', LOG_LEVEL: 'info' },
      { waitReady: false }
    )
    servers.push(replica)
    const said = (message: string) => logLines(replica.output()).some((line) => line.msg === message)
    await until(() => said('waiting for the database'), 'serve to wait for its database')

    const signalled = Date.now()
    const code = await replica.stop('SIGTERM')

    assert.equal(code, 0, replica.output())
    assert.ok(Date.now() - signalled < 5000, 'it did not wait for the database')
    assert.ok(said('stopping') && said('stopped'), replica.output())
    assert.ok(!said('start-up failed'), 'a start-up a signal cut short is no failure')
  })
})
