import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import postgres from 'postgres'
import { request } from './helpers/http.js'
import { isGone, newDataDir, readPostmaster, removeDataDir } from './helpers/postgres.js'
import { isRefused } from './helpers/processes.js'
import { killGroup, spawnServer, type ServerProcess } from './helpers/servers.js'
import { until } from './helpers/wait.js'

// The embedded cluster (`start`) as a user runs it: its own PostgreSQL under DATA_DIR, two workers.
// Durability is judged on what the client was told: every 200 must be in the database afterwards.

const dataDirs: string[] = []
const clusters: ServerProcess[] = []
const connections: postgres.Sql[] = []

after(async () => {
  for (const sql of connections) await sql.end({ timeout: 1 })
  for (const { child } of clusters) if (child.exitCode === null && child.signalCode === null) killGroup(child)
  for (const dataDir of dataDirs) await removeDataDir(dataDir)
})

async function ownDataDir(): Promise<string> {
  const dataDir = await newDataDir('tandem-crash-')
  dataDirs.push(dataDir)
  return dataDir
}

/** `start` on DATA_DIR, returned once the supervisor says every worker listens (and it handles signals). */
async function startCluster(dataDir: string, env: Record<string, string> = {}): Promise<ServerProcess> {
  const cluster = await spawnServer('start', { DATA_DIR: dataDir, WORKERS: '2', ...env })
  clusters.push(cluster)
  return cluster
}

/** Straight to the embedded PostgreSQL, around the API, with the credentials `start` keeps. */
async function connectDirectly(dataDir: string) {
  const { user, password } = JSON.parse(await readFile(path.join(dataDir, 'credentials.json'), 'utf8'))
  const { port } = await readPostmaster(dataDir)
  const sql = postgres({ host: '127.0.0.1', port, user, password, database: 'postgres', max: 2, onnotice: () => {} })
  connections.push(sql)
  return sql
}

interface Outcome {
  clientId: number
  valor: number
  descricao: string
  /** 0: no HTTP response at all; `failure` says what happened to the connection. */
  status: number
  body?: { error?: unknown; message?: unknown; stack?: unknown }
  failure?: string
}

async function credit(base: string, clientId: number, valor: number, descricao: string): Promise<Outcome> {
  const sent = { clientId, valor, descricao }
  try {
    const res = await request(base, 'POST', `/clientes/${clientId}/transacoes`, {
      json: { valor, tipo: 'c', descricao }
    })
    return { ...sent, status: res.status, body: res.body }
  } catch (error) {
    const { name, message, cause } = error as Error & { cause?: { code?: string } }
    return { ...sent, status: 0, failure: name === 'TimeoutError' ? 'timeout' : (cause?.code ?? message) }
  }
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i)
const acknowledged = (outcomes: Outcome[]) => outcomes.filter((outcome) => outcome.status === 200)

describe('when the whole embedded cluster is killed -9 in the middle of a burst', () => {
  test('then a restart on the same DATA_DIR recovers every acknowledged transaction exactly once, and balances add up', async () => {
    // Arrange: a fresh DATA_DIR (initdb on first start) and a first burst, all of it acknowledged.
    const dataDir = await ownDataDir()
    const first = await startCluster(dataDir)
    const firstBurst = await Promise.all(range(300).map((i) => credit(first.url, (i % 5) + 1, i + 1, `a${i}`)))
    assert.deepEqual(
      firstBurst.filter((outcome) => outcome.status !== 200),
      []
    )
    const postmaster = await readPostmaster(dataDir)

    // A row lock the test holds on client 5 keeps that client's 60 credits of the second burst waiting
    // inside PostgreSQL, so the kill finds some requests unanswered whatever the machine's speed (a
    // fast run could otherwise have all 300 acknowledged before the 20th acknowledgement was read).
    // Never committed: the kill ends this backend too, and its transaction (which wrote nothing) with it.
    const locker = await (await connectDirectly(dataDir)).reserve()
    await locker`begin`
    await locker`select 1 from clientes where id = 5 for update`

    // Act: a second burst; as its 20th acknowledgement arrives, supervisor, workers and postmaster
    // (each in its own process group, with its backends) all die at once.
    let crashed = false
    const crash = () => {
      if (crashed) return
      crashed = true
      killGroup(first.child)
      killGroupOf(postmaster.pid)
    }
    let acknowledgements = 0
    const secondBurst = await Promise.all(
      range(300).map(async (i) => {
        const outcome = await credit(first.url, (i % 5) + 1, 1000 + i, `b${i}`)
        if (outcome.status === 200 && ++acknowledgements === 20) crash()
        return outcome
      })
    )
    crash()
    await first.stop()
    await until(() => isGone(postmaster.pid), 'the killed postmaster to be reaped')
    const second = await startCluster(dataDir)

    // Assert: the kill really cut the burst short, and PostgreSQL had to recover.
    assert.ok(
      secondBurst.some((outcome) => outcome.status !== 200),
      'some requests of the second burst were cut off'
    )
    assert.deepEqual(
      secondBurst.filter((outcome) => outcome.failure === 'timeout'),
      [],
      'nothing hung'
    )
    const postgresLog = await readFile(path.join(dataDir, 'postgres.log'), 'utf8')
    assert.match(postgresLog, /automatic recovery in progress/)

    const sql = await connectDirectly(dataDir)
    try {
      const stored = await sql<{ descricao: string; cliente_id: number; valor: number; copies: number }[]>`
        select descricao, cliente_id, valor, count(*)::int as copies from transacoes group by 1, 2, 3`
      const byDescricao = new Map(stored.map((row) => [row.descricao, row]))
      const lost = acknowledged([...firstBurst, ...secondBurst]).filter(({ descricao, clientId, valor }) => {
        const row = byDescricao.get(descricao)
        return !row || row.cliente_id !== clientId || row.valor !== valor
      })
      assert.deepEqual(lost, [], 'every 200 is stored, for its client and amount')
      assert.deepEqual(
        stored.filter((row) => row.copies !== 1),
        [],
        'nothing is stored twice'
      )
      assert.equal(new Set(stored.map((row) => row.descricao)).size, stored.length, 'each request stored once at most')

      const balances = await sql<{ id: number; saldo: number; sum: number }[]>`
        select c.id, c.saldo,
               coalesce(sum(case t.tipo when 'c' then t.valor else -t.valor end), 0)::int as sum
          from clientes c left join transacoes t on t.cliente_id = c.id
         group by c.id order by c.id`
      assert.deepEqual(
        balances.map((row) => row.id),
        [1, 2, 3, 4, 5]
      )
      for (const { id, saldo, sum } of balances) {
        assert.equal(saldo, sum, `client ${id}: balance = sum of its stored transactions`)
        const extrato = await request(second.url, 'GET', `/clientes/${id}/extrato`)
        assert.equal(extrato.status, 200)
        assert.equal(extrato.body.saldo.total, saldo, `client ${id}: the restarted API reads the recovered balance`)
      }
    } finally {
      await sql.end({ timeout: 5 })
    }
    assert.equal(await second.stop('SIGTERM'), 0)
  })
})

describe('when the embedded cluster gets SIGTERM with requests in flight', () => {
  test('then accepted requests finish with 200, new connections are refused, it exits 0 with its database stopped, and the next start has the data', async () => {
    // Arrange: 100 credits accepted and held in flight by row locks the test keeps on 100 clients of
    // its own, one credit each (a replica has at most CREBITOS_STATEMENTS_PER_CLIENT statements per
    // client in flight and queues the client's others behind them: one client each puts all 100
    // inside PostgreSQL), with
    // pools big enough for all of them, however the supervisor spreads the connections, and lock and
    // statement deadlines longer than the test holds the lock: on a slow machine the first requests
    // would otherwise give up, 503 after DATABASE_LOCK_TIMEOUT_MS, before the last ones arrive).
    const dataDir = await ownDataDir()
    const cluster = await startCluster(dataDir, {
      DATABASE_POOL_MAX: '100',
      SHUTDOWN_TIMEOUT_MS: '30000',
      DATABASE_LOCK_TIMEOUT_MS: '60000',
      DATABASE_STATEMENT_TIMEOUT_MS: '60000'
    })
    const postmaster = await readPostmaster(dataDir)
    const sql = await connectDirectly(dataDir)
    const heldClients = range(100).map((i) => 1000 + i)
    await sql`insert into clientes (id, limite) select unnest(${heldClients}::int[]), 0`
    const blocker = await sql.reserve()
    await blocker`begin`
    await blocker`select 1 from clientes where id = any(${heldClients}::int[]) for update`
    const held = range(100).map((i) => credit(cluster.url, heldClients[i], i + 1, `held${i}`))
    await until(async () => {
      const [{ waiting }] = await sql<{ waiting: number }[]>`
        select count(*)::int as waiting from pg_stat_activity
         where application_name = 'tandem' and wait_event_type = 'Lock'`
      return waiting === 100
    }, 'all 100 requests to wait on the lock inside PostgreSQL')

    // Act: more requests fired, and the signal sent at once; the lock is let go once the
    // supervisor has stopped taking connections.
    const racing = range(50).map((i) => credit(cluster.url, 4, i + 1, `race${i}`))
    const exited = cluster.stop('SIGTERM')
    await until(() => isRefused(cluster.port), 'new connections to be refused while the held requests drain')
    await blocker`commit`
    blocker.release()
    const heldOutcomes = await Promise.all(held)
    const racingOutcomes = await Promise.all(racing)
    await sql.end({ timeout: 5 })
    const code = await exited

    // Assert: every accepted request got its 200; the racing ones got an answer or a clean refusal.
    assert.deepEqual(
      heldOutcomes.filter((outcome) => outcome.status !== 200),
      []
    )
    for (const outcome of racingOutcomes) {
      if (outcome.status === 200) continue
      if (outcome.status === 503) {
        assert.equal(outcome.body?.error, 'unavailable', `a 503 explains itself in JSON: ${JSON.stringify(outcome)}`)
        assert.equal(outcome.body?.stack, undefined)
        continue
      }
      assert.equal(outcome.status, 0, `only 200 or 503: ${JSON.stringify(outcome)}`)
      assert.ok(
        ['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET'].includes(outcome.failure ?? ''),
        `a request without an answer was refused at the door, not left hanging: ${JSON.stringify(outcome)}`
      )
    }
    assert.equal(code, 0, cluster.output())
    assert.ok(isGone(postmaster.pid), 'the supervisor stopped its PostgreSQL before exiting')
    assert.equal(existsSync(path.join(dataDir, 'pg', 'postmaster.pid')), false, 'PostgreSQL shut down cleanly')

    // ...and the next start on the same DATA_DIR has exactly what was acknowledged.
    const next = await startCluster(dataDir)
    const check = await connectDirectly(dataDir)
    try {
      const heldRows = await check`select descricao from transacoes where cliente_id = any(${heldClients}::int[])`
      assert.equal(heldRows.length, 100)
      const extrato = await request(next.url, 'GET', `/clientes/${heldClients[99]}/extrato`)
      assert.equal(extrato.body.saldo.total, 100)
      const racingRows = await check<{ descricao: string }[]>`select descricao from transacoes where cliente_id = 4`
      assert.deepEqual(
        racingRows.map((row) => row.descricao).sort(),
        acknowledged(racingOutcomes)
          .map((outcome) => outcome.descricao)
          .sort(),
        'a racing request is stored if and only if it was answered 200'
      )
    } finally {
      await check.end({ timeout: 5 })
    }
    assert.equal(await next.stop('SIGTERM'), 0)
  })
})

function killGroupOf(pid: number) {
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    // already gone
  }
}
