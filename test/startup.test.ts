import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import postgres from 'postgres'
import { ConfigError, loadConfig } from '../src/config.js'
import { freePort } from './helpers/processes.js'
import { migrations } from '../src/db/migrate.js'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { request } from './helpers/http.js'
import { newDataDir, removeDataDir, startDatabaseCommand } from './helpers/postgres.js'
import { killGroup, logLines, mainScript, projectRoot, type ServerProcess, spawnServer } from './helpers/servers.js'
import { until } from './helpers/wait.js'

// How `serve` and `start` come up: together on an empty database, with bad settings, before their
// database exists, and when it never appears.

const children: ChildProcess[] = []
const databases: TestDatabase[] = []
const dataDirs: string[] = []

after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) killGroup(child)
  for (const dataDir of dataDirs) await removeDataDir(dataDir)
  for (const db of databases) await db.drop()
})

async function serveProcess(env: Record<string, string>, options?: { waitReady?: boolean }): Promise<ServerProcess> {
  const server = await spawnServer('serve', { LOG_LEVEL: 'info', ...env }, options)
  children.push(server.child)
  return server
}

async function ownDataDir(): Promise<string> {
  const dataDir = await newDataDir('tandem-startup-')
  dataDirs.push(dataDir)
  return dataDir
}

async function ownDatabase(): Promise<TestDatabase> {
  const db = await createDatabase()
  databases.push(db)
  return db
}

interface Finished {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a CLI command to its end; one that is still running after `timeoutMs` is killed and fails the test. */
async function runToExit(command: string, env: Record<string, string>, timeoutMs = 30_000): Promise<Finished> {
  const child = spawn(process.execPath, [mainScript, command], {
    cwd: projectRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'test', ...env }
  })
  children.push(child)
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk) => {
    stdout += chunk
  })
  child.stderr!.on('data', (chunk) => {
    stderr += chunk
  })
  const timer = setTimeout(() => killGroup(child), timeoutMs)
  const [code, signal] = await once(child, 'close')
  clearTimeout(timer)
  if (signal === 'SIGKILL') throw new Error(`\`${command}\` still running after ${timeoutMs} ms:\n${stdout}${stderr}`)
  return { code, stdout, stderr }
}

const migrationFiles = async () => (await migrations()).map((migration) => migration.name)

describe('when two replicas start at the same moment on an empty database', () => {
  test('then both become healthy, each migration is applied once, and the five clients are seeded once', async () => {
    const db = await ownDatabase()

    const replicas = await Promise.all([1, 2].map(() => serveProcess({ DATABASE_URL: db.url })))

    for (const replica of replicas) assert.equal((await request(replica.url, 'GET', '/health')).status, 200)
    const files = await migrationFiles()
    const applied = await db.sql<{ name: string; times: number }[]>`
      select name, count(*)::int as times from schema_migrations group by name order by name`
    assert.deepEqual(
      applied.map((row) => ({ ...row })),
      files.map((name) => ({ name, times: 1 }))
    )
    const clients = await db.sql`select id, limite, saldo from clientes order by id`
    assert.deepEqual(
      clients.map((row) => ({ ...row })),
      [
        { id: 1, limite: 100000, saldo: 0 },
        { id: 2, limite: 80000, saldo: 0 },
        { id: 3, limite: 1000000, saldo: 0 },
        { id: 4, limite: 10000000, saldo: 0 },
        { id: 5, limite: 500000, saldo: 0 }
      ]
    )
    const appliedLogs = replicas.flatMap((replica) =>
      logLines(replica.output()).filter((line) => line.msg === 'migration applied')
    )
    assert.equal(appliedLogs.length, files.length, 'one replica migrated, the other found nothing to do')
    for (const replica of replicas) assert.equal(await replica.stop(), 0)
  })
})

describe('when a setting is invalid', () => {
  // DATABASE_URL points at nothing, so a setting that slipped through could not start anything real.
  const unreachable = 'postgres://tandem:secret@127.0.0.1:1/tandem'
  const cases: Array<{ command: string; variable: string; env: Record<string, string> }> = [
    { command: 'serve', variable: 'PORT', env: { PORT: 'abc', DATABASE_URL: unreachable } },
    { command: 'start', variable: 'WORKERS', env: { WORKERS: '0', DATABASE_URL: unreachable } },
    { command: 'serve', variable: 'DATABASE_URL', env: { DATABASE_URL: 'mysql://x' } },
    {
      command: 'serve',
      variable: 'INCREMENT_BATCH_WINDOW_MS',
      env: { INCREMENT_BATCH_WINDOW_MS: '600', DATABASE_URL: unreachable }
    },
    {
      command: 'start',
      variable: 'DATABASE_LOCK_TIMEOUT_MS',
      env: { DATABASE_LOCK_TIMEOUT_MS: '6000', DATABASE_URL: unreachable }
    }
  ]
  for (const { command, variable, env } of cases) {
    test(`${variable}=${env[variable]}: then \`${command}\` exits 1 with one line on stderr naming ${variable}`, async () => {
      const { code, stderr } = await runToExit(command, { DATABASE_WAIT_MS: '0', ...env }, 15_000)

      assert.equal(code, 1)
      const lines = stderr.trim().split('\n')
      assert.equal(lines.length, 1, `one line, no stack trace:\n${stderr}`)
      assert.match(lines[0], new RegExp(`\\b${variable}\\b`))
    })
  }
})

describe('when settings that bound one another disagree', () => {
  // Lowering one quietly would run something other than what was asked for.
  const refusal = (env: Record<string, string>) => {
    try {
      loadConfig(env)
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error))
      return error.message
    }
    assert.fail(`accepted ${JSON.stringify(env)}`)
  }

  test('then a batch window up to half of INCREMENT_MAX_LAG_MS is taken as given, and one beyond is refused naming it', () => {
    assert.equal(
      loadConfig({ INCREMENT_MAX_LAG_MS: '100', INCREMENT_BATCH_WINDOW_MS: '50' }).incrementBatchWindowMs,
      50
    )
    assert.equal(
      refusal({ INCREMENT_MAX_LAG_MS: '100', INCREMENT_BATCH_WINDOW_MS: '51' }),
      'Invalid environment variable INCREMENT_BATCH_WINDOW_MS="51": must be at most half of INCREMENT_MAX_LAG_MS (100)'
    )
    assert.equal(
      refusal({ INCREMENT_MAX_LAG_MS: '3' }),
      'Invalid environment variable INCREMENT_BATCH_WINDOW_MS (default 2): must be at most half of INCREMENT_MAX_LAG_MS (3)'
    )
  })

  test('then a lock timeout up to the statement timeout is taken as given, and one beyond is refused naming it', () => {
    assert.equal(
      loadConfig({ DATABASE_STATEMENT_TIMEOUT_MS: '2000', DATABASE_LOCK_TIMEOUT_MS: '2000' }).databaseLockTimeoutMs,
      2000
    )
    assert.equal(
      refusal({ DATABASE_STATEMENT_TIMEOUT_MS: '2000', DATABASE_LOCK_TIMEOUT_MS: '2001' }),
      'Invalid environment variable DATABASE_LOCK_TIMEOUT_MS="2001": must be at most DATABASE_STATEMENT_TIMEOUT_MS (2000)'
    )
    assert.equal(
      refusal({ DATABASE_STATEMENT_TIMEOUT_MS: '500' }),
      'Invalid environment variable DATABASE_LOCK_TIMEOUT_MS (default 1000): must be at most DATABASE_STATEMENT_TIMEOUT_MS (500)'
    )
  })
})

describe('when the database password is not URL-safe', () => {
  // What `openssl rand -base64 24` gives 39 % of the time, pasted raw into DATABASE_URL.
  const password = 'Xq7/kP+2vR?w#9Lm@z%Tq='
  const pasted = [
    `postgres://tandem:${password}@127.0.0.1:1/tandem`,
    'postgres://tandem:/Rk2+9vQxLm@127.0.0.1:1/tandem',
    'postgres://tandem:ab%zzcd@127.0.0.1:1/tandem',
    'postgres://tandem:/9%zzRk@127.0.0.1:1/tandem'
  ]
  for (const url of pasted) {
    test(`pasted raw into DATABASE_URL (${url.slice(18, 24)}…): \`serve\` exits 1 in one line naming DATABASE_URL, printing nothing of it`, async () => {
      const { code, stdout, stderr } = await runToExit(
        'serve',
        { DATABASE_URL: url, DATABASE_WAIT_MS: '0', LOG_LEVEL: 'info' },
        15_000
      )

      assert.equal(code, 1)
      const lines = stderr.trim().split('\n')
      assert.equal(lines.length, 1, `one line, no stack trace:\n${stderr}`)
      assert.match(lines[0], /\bDATABASE_URL\b/)
      assert.match(lines[0], /DATABASE_PASSWORD/, 'says what to do instead')
      const secret = url.slice(url.indexOf(':', 12) + 1, url.lastIndexOf('@'))
      for (const piece of [secret, ...secret.split(/[/?#@%]/).filter((part) => part.length >= 3)]) {
        assert.ok(!(stdout + stderr).includes(piece), `"${piece}" printed:\n${stdout}${stderr}`)
      }
    })
  }

  test('given apart in DATABASE_PASSWORD or DATABASE_PASSWORD_FILE, postgres.js reads back exactly that password', async () => {
    const awkward = `${password} '"\\`
    const file = path.join(await ownDataDir(), 'db_password')
    await writeFile(file, `${awkward}\n`) // as `echo` or a secrets manager writes it
    for (const given of [{ DATABASE_PASSWORD: awkward }, { DATABASE_PASSWORD_FILE: file }]) {
      const config = loadConfig({ DATABASE_URL: 'postgres://tandem@db:5432/tandem', ...given })
      const sql = postgres(config.databaseUrl!)
      assert.deepEqual(
        [sql.options.pass, sql.options.user, sql.options.database, sql.options.host],
        [awkward, 'tandem', 'tandem', ['db']]
      )
    }
    assert.throws(
      () => loadConfig({ DATABASE_URL: 'postgres://tandem@db/tandem', DATABASE_PASSWORD_FILE: `${file}.missing` }),
      /Invalid environment variable DATABASE_PASSWORD_FILE: cannot read it \(ENOENT\)$/
    )
  })

  test('given apart in DATABASE_PASSWORD, any characters work against a real server and are never logged', async () => {
    const db = await ownDatabase()
    const role = `tandem_pw_${process.pid}`
    await db.sql.unsafe(`create role ${role} login password '${password.replace(/'/g, "''")}'`)
    await db.sql.unsafe(`grant all on schema public to ${role}`)
    try {
      const url = new URL(db.url)
      url.username = role
      url.password = ''
      const replica = await serveProcess({ DATABASE_URL: url.href, DATABASE_PASSWORD: password })
      const res = await request(replica.url, 'POST', '/clientes/1/transacoes', {
        json: { valor: 1, tipo: 'c', descricao: 'pw' }
      })
      assert.equal(res.status, 200, res.text)
      assert.equal(await replica.stop(), 0)
      assert.ok(!replica.output().includes(password))
      assert.ok(!replica.output().includes(encodeURIComponent(password)))
    } finally {
      await db.sql.unsafe(`reassign owned by ${role} to current_user; drop owned by ${role}; drop role ${role}`)
    }
  })
})

describe('when `serve` starts before its database', () => {
  test('then it logs that it waits, backs off, and comes up by itself once the database appears', async () => {
    // Arrange: an embedded PostgreSQL initialised once (its password is made by initdb), then stopped.
    const dataDir = await ownDataDir()
    const port = await freePort()
    const initialised = await startDatabaseCommand(dataDir, port)
    assert.equal(await initialised.stop(), 0)

    // Act: `serve` first; the database only once serve has tried a few times.
    const replica = await serveProcess({ DATABASE_URL: initialised.url }, { waitReady: false })
    const waits = () => logLines(replica.output()).filter((line) => line.msg === 'waiting for the database')
    await until(() => waits().length >= 3, 'three logged attempts')
    const database = await startDatabaseCommand(dataDir, port)
    await until(
      async () => {
        if (replica.child.exitCode !== null) throw new Error(`serve exited:\n${replica.output()}`)
        return fetch(`${replica.url}/health`, { signal: AbortSignal.timeout(1000) }).then(
          (res) => res.ok,
          () => false
        )
      },
      'serve to answer /health',
      60_000
    )

    // Assert: growing delays, the recovery logged, and a working API on the now migrated database.
    const delays = waits().map((line) => line.retryInMs as number)
    assert.deepEqual(delays.slice(0, 3), [100, 200, 400])
    assert.ok(logLines(replica.output()).some((line) => line.msg === 'database reachable'))
    const res = await request(replica.url, 'POST', '/clientes/2/transacoes', {
      json: { valor: 7, tipo: 'c', descricao: 'late db' }
    })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { limite: 80000, saldo: 7 })
    assert.equal(await replica.stop(), 0)
    assert.equal(await database.stop(), 0)
  })
})

describe('when the database never appears', () => {
  test('then `serve` gives up after DATABASE_WAIT_MS and exits non-zero, saying why', async () => {
    const nothing = `postgres://tandem:secret@127.0.0.1:${await freePort()}/tandem`

    const { code, stdout, stderr } = await runToExit('serve', {
      DATABASE_URL: nothing,
      DATABASE_WAIT_MS: '1000',
      LOG_LEVEL: 'info'
    })

    assert.notEqual(code, 0)
    const lines = logLines(stdout + stderr)
    assert.ok(lines.some((line) => line.msg === 'waiting for the database'))
    assert.ok(!(stdout + stderr).includes('secret'), 'the password of DATABASE_URL is never logged')
    const fatal = lines.find((line) => line.msg === 'start-up failed')
    assert.ok(fatal, `a start-up failure is logged:\n${stdout}${stderr}`)
    assert.match((fatal.err as { message: string }).message, /database not reachable after \d+ ms: .*ECONNREFUSED/)
  })
})
