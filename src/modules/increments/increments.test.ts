import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createSql, isClientDataError } from '../../db/pool.js'
import { signUp } from '../../../test/helpers/accounts.js'
import { createDatabase, type TestDatabase } from '../../../test/helpers/database.js'
import { request, type Response } from '../../../test/helpers/http.js'
import { inWaves } from '../../../test/helpers/load.js'
import { killGroup, spawnServer, startApp, type ServerProcess } from '../../../test/helpers/servers.js'
import { until } from '../../../test/helpers/wait.js'
import { Unavailable } from '../../platform/errors.js'
import { incrementBatcher } from './batcher.js'

interface Replica {
  url: string
  close(): Promise<void>
}

let db: TestDatabase
let servers: Replica[]
let auth: Record<string, string>
const started: Replica[] = []

const increment = (server: { url: string }, key: string, value: unknown, headers = auth) =>
  request(server.url, 'POST', '/increment', { json: { key, value }, headers })

async function storedTotal(key: string): Promise<number | undefined> {
  const [row] = await db.sql`select value from increments where key = ${key}`
  return row ? Number(row.value) : undefined
}

/** An in-process replica with a pool of its own, as a served one has (its timeouts included). */
async function replica(env: Record<string, string> = {}): Promise<Replica> {
  const statementTimeoutMs = Number(env.DATABASE_STATEMENT_TIMEOUT_MS ?? 5000)
  const sql = createSql(db.url, { statementTimeoutMs, lockTimeoutMs: Math.min(1000, statementTimeoutMs) })
  // The test's clients share this event loop with both replicas: its delay would measure them, not a replica.
  const { url, app } = await startApp(sql, { OVERLOAD_EVENT_LOOP_DELAY_MS: '0', ...env })
  const server = {
    url,
    async close() {
      await app.close()
      await sql.end({ timeout: 5 })
    }
  }
  started.push(server)
  return server
}

/** One figure from a replica's /metrics, e.g. `tandem_increments_refused_total{reason="deadline"}`. */
async function metric(server: { url: string }, series: string): Promise<number> {
  const text = (await request(server.url, 'GET', '/metrics')).text
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return Number(line?.slice(series.length + 1))
}

before(async () => {
  db = await createDatabase({ migrated: true, statementTimeoutMs: 5000, lockTimeoutMs: 1000 })
  servers = await Promise.all([1, 2].map(() => replica()))
  auth = (await signUp(servers[0].url)).bearer
})

after(async () => {
  await Promise.all(started.map((server) => server.close()))
  await db.drop()
})

describe('POST /increment', () => {
  test('answers the new total including this increment, and stores it', async () => {
    const first = await increment(servers[0], 'apples', 5)
    const second = await increment(servers[1], 'apples', -2)

    assert.deepEqual([first.status, first.body], [200, { key: 'apples', value: 5 }])
    assert.deepEqual([second.status, second.body], [200, { key: 'apples', value: 3 }])
    assert.equal(await storedTotal('apples'), 3)
  })

  test('without a session, or after logout: 401 and nothing stored, even with a bad body', async () => {
    const user = await signUp(servers[0].url)
    await request(servers[0].url, 'DELETE', '/api/sessions', { headers: user.bearer })

    for (const headers of [{}, user.bearer, { authorization: 'Bearer forged' }]) {
      const res = await increment(servers[1], 'unauthorised', 1, headers)
      assert.equal(res.status, 401)
    }
    assert.equal((await increment(servers[1], 'unauthorised', 0, {})).status, 401)
    assert.equal(await storedTotal('unauthorised'), undefined)
  })

  test("the original service's paths answer with the same contract: POST /api/increment and GET /api/health", async () => {
    const viaSeed = await request(servers[1].url, 'POST', '/api/increment', {
      json: { key: 'seed path', value: 4 },
      headers: auth
    })
    const viaTandem = await increment(servers[0], 'seed path', 3)
    const anonymous = await request(servers[0].url, 'POST', '/api/increment', { json: { key: 'seed path', value: 1 } })
    const invalid = await request(servers[0].url, 'POST', '/api/increment', {
      json: { key: 'seed path', value: 0 },
      headers: auth
    })
    const health = await request(servers[1].url, 'GET', '/api/health')

    assert.deepEqual([viaSeed.status, viaSeed.body], [200, { key: 'seed path', value: 4 }])
    assert.deepEqual([viaTandem.status, viaTandem.body], [200, { key: 'seed path', value: 7 }])
    assert.equal(anonymous.status, 401)
    assert.equal(invalid.status, 422)
    assert.equal(await storedTotal('seed path'), 7)
    assert.deepEqual([health.status, health.body], [200, { status: 'ok' }])
  })

  test('works with the session cookie too', async () => {
    const user = await signUp(servers[1].url)

    const res = await increment(servers[0], 'cookie-key', 7, user.cookie)

    assert.deepEqual(res.body, { key: 'cookie-key', value: 7 })
  })

  const invalid: Array<[string, unknown]> = [
    ['value zero', { key: 'k', value: 0 }],
    ['value fractional', { key: 'k', value: 1.5 }],
    ['value a string', { key: 'k', value: '5' }],
    ['value past 2^31', { key: 'k', value: 2147483648 }],
    ['value below -2^31', { key: 'k', value: -2147483649 }],
    ['value missing', { key: 'k' }],
    ['key empty', { key: '', value: 1 }],
    ['key of 201 characters', { key: 'x'.repeat(201), value: 1 }],
    ['key not a string', { key: 5, value: 1 }],
    ['key with a NUL', { key: 'a\u0000b', value: 1 }]
  ]
  for (const [name, body] of invalid) {
    test(`${name}: 422 with the field named, nothing stored`, async () => {
      const res = await request(servers[0].url, 'POST', '/increment', { json: body, headers: auth })

      assert.equal(res.status, 422)
      assert.equal(res.body.error, 'invalid-input')
      assert.match(res.body.details.join(), /^(key|value):/)
      assert.deepEqual([...(await db.sql`select key from increments where key in ('k', '', ${'x'.repeat(201)})`)], [])
    })
  }

  test('a total that would leave the exact integer range gets 422; other keys in the same moment still count', async () => {
    await db.sql`insert into increments (key, value) values ('huge', 9007199254740000)`

    const [huge, ...others] = await Promise.all([
      increment(servers[0], 'huge', 2147483647),
      ...Array.from({ length: 5 }, () => increment(servers[0], 'neighbour', 1))
    ])

    assert.equal(huge.status, 422)
    assert.deepEqual(
      others.map((res) => res.status),
      Array(5).fill(200)
    )
    assert.equal(await storedTotal('huge'), 9007199254740000)
    assert.equal(await storedTotal('neighbour'), 5)
  })
})

describe('the batcher, on data PostgreSQL stores differently or refuses', () => {
  const batcher = () => incrementBatcher(db.sql, { windowMs: 20, queueMax: 100, maxLagMs: 1000, lockTimeoutMs: 1000 })

  test('when PostgreSQL stores a key as a different text (lone surrogates), then every increment is answered with the total it returned, and counted once', async () => {
    const increments = batcher()

    const answers = await Promise.allSettled([
      increments.add('lone-\ud800', 2),
      increments.add('pair-\ud800', 1), // both arrive as 'pair-\ufffd': one row
      increments.add('pair-\udc00', 3),
      increments.add('plain', 4)
    ])

    assert.deepEqual(
      answers,
      [2, 1, 4, 4].map((value) => ({ status: 'fulfilled', value }))
    )
    assert.equal(await storedTotal('lone-\ufffd'), 2)
    assert.equal(await storedTotal('pair-\ufffd'), 4)
    assert.equal(await storedTotal('plain'), 4)
  })

  test('when PostgreSQL refuses one increment of a batch (classes 22 and 23), then only that one is refused and the others commit', async () => {
    const max = Number.MAX_SAFE_INTEGER
    await db.sql`insert into increments (key, value) values ('near-the-edge', ${max - 10})`
    const increments = batcher()

    const answers = await Promise.allSettled([
      increments.add('near-the-edge', 5),
      increments.add('near-the-edge', 10), // past the total's range: 23514
      increments.add('near-the-edge', 3),
      increments.add('with-nul-\u0000', 1), // text PostgreSQL cannot hold: 22021
      increments.add('y'.repeat(201), 1), // longer than a key may be: 23514
      increments.add('innocent', 1),
      increments.add('innocent', 2)
    ])

    const outcomes = answers.map((answer) =>
      answer.status === 'fulfilled' ? answer.value : isClientDataError(answer.reason) && 'refused'
    )
    assert.deepEqual(outcomes, [max - 5, 'refused', max - 2, 'refused', 'refused', 1, 3])
    assert.equal(await storedTotal('near-the-edge'), max - 2)
    assert.equal(await storedTotal('innocent'), 3)
    assert.equal(
      (await db.sql`select count(*)::int as n from increments where key like 'with-nul-%' or key like 'yyy%'`)[0].n,
      0
    )
  })
})

describe('the batcher, when no pool connection is free', () => {
  test('when its statement gets no pool connection, the increment is refused 503 by its deadline and never written', async () => {
    const pool = createSql(db.url, { max: 1, statementTimeoutMs: 1000 })
    const only = await pool.reserve() // the one connection, busy elsewhere
    const increments = incrementBatcher(pool, { windowMs: 0, queueMax: 10, maxLagMs: 200, lockTimeoutMs: 1000 })
    try {
      const answer = await Promise.race([
        increments.add('no-connection', 1).then(
          (total) => ({ total }),
          (error: unknown) => ({ error })
        ),
        sleep(5000).then(() => 'unanswered' as const)
      ])
      only.release()

      assert.ok(
        typeof answer === 'object' && 'error' in answer && answer.error instanceof Unavailable,
        `refused, not ${JSON.stringify(answer)}`
      )
      assert.equal(increments.size(), 0)
      assert.equal(await increments.add('no-connection-after', 1), 1)
      assert.equal(await storedTotal('no-connection'), undefined)
    } finally {
      only.release()
      await pool.end({ timeout: 5 })
    }
  })
})

describe('POST /increment with ill-formed Unicode', () => {
  test("a key with a lone surrogate gets 422 and writes nothing; other users' increments of the same moment count", async () => {
    const other = await signUp(servers[1].url)

    const [lone, inside, ...others] = await Promise.all([
      increment(servers[0], '\ud800', 1),
      increment(servers[0], 'a\ud800b', 1),
      ...Array.from({ length: 4 }, (_, i) => increment(servers[i % 2], 'well-formed', 1, other.bearer))
    ])

    assert.deepEqual([lone.status, inside.status], [422, 422])
    assert.equal(lone.body.error, 'invalid-input')
    assert.deepEqual(
      others.map((res) => res.status),
      [200, 200, 200, 200]
    )
    assert.equal(await storedTotal('\ufffd'), undefined)
    assert.equal(await storedTotal('a\ufffdb'), undefined)
    assert.equal(await storedTotal('well-formed'), 4)
  })
})

describe('POST /increment when PostgreSQL is locked or slow', () => {
  test('a row lock held 15 s on one key: every increment answered within 8 s, other keys acknowledged within the deadline, nothing acknowledged lost', async () => {
    const [locked, free] = ['locked-row', 'beside-the-lock']
    await db.sql`insert into increments (key, value) values (${locked}, 0)`
    const answers: Array<{ key: string; status: number; ms: number }> = []
    const releaseLock = await db.holdLock((tx) => tx`select 1 from increments where key = ${locked} for update`)
    const lockEnds = Date.now() + 15_000

    const lane = async (index: number) => {
      const key = index % 2 ? locked : free
      while (Date.now() < lockEnds) {
        const sentAt = Date.now()
        const res = await increment(servers[index % 4 < 2 ? 0 : 1], key, 1)
        answers.push({ key, status: res.status, ms: Date.now() - sentAt })
        await sleep(50)
      }
    }
    await Promise.all([...Array.from({ length: 8 }, (_, index) => lane(index)), sleep(15_000).then(releaseLock)])

    const slow = answers.filter((answer) => answer.ms > 8000)
    assert.deepEqual(slow, [], 'answered within 8 s')
    assert.deepEqual(
      answers.filter((answer) => answer.status !== 200 && answer.status !== 503),
      []
    )
    const beside = answers.filter((answer) => answer.key === free)
    assert.ok(beside.length > 100)
    assert.deepEqual(
      beside.filter((answer) => answer.status !== 200 || answer.ms > 6000),
      [],
      'the other key acknowledged within the deadline'
    )
    for (const key of [locked, free]) {
      const acknowledged = answers.filter((answer) => answer.key === key && answer.status === 200).length
      assert.equal(await storedTotal(key), acknowledged, `${key}: stored exactly what was acknowledged`)
    }
  })

  test('a row lock taken while two replicas batch its key with another: the other key is acknowledged within its deadline from the first moment on', async () => {
    // Each replica's batches hold the other key's row while they wait on the locked one; until the
    // locked key is known to be contended, a batch that goes stale is followed by another.
    const pools = [0, 1].map(() => createSql(db.url, { statementTimeoutMs: 5000, lockTimeoutMs: 1000 }))
    const options = { windowMs: 2, queueMax: 1000, maxLagMs: 1000, lockTimeoutMs: 1000 }
    const batchers = pools.map((pool) => incrementBatcher(pool, options))
    const rounds = 6
    const refused: string[] = []
    const slowest: number[] = []
    try {
      for (let round = 0; round < rounds; round++) {
        const [locked, free] = [`onset-locked-${round}`, `onset-free-${round}`]
        await db.sql`insert into increments (key, value) values (${locked}, 0), (${free}, 0)`
        const releaseLock = await db.holdLock((tx) => tx`select 1 from increments where key = ${locked} for update`)
        const answers: Array<Promise<number>> = []
        const frees: Array<Promise<number>> = []
        for (let tick = 0; tick < 60; tick++) {
          for (const increments of batchers) {
            answers.push(increments.add(locked, 1).catch(() => -1))
            const sentAt = performance.now()
            frees.push(
              increments.add(free, 1).then(
                () => performance.now() - sentAt,
                (error: unknown) => {
                  refused.push(`round ${round}, tick ${tick}: ${String(error)}`)
                  return performance.now() - sentAt
                }
              )
            )
          }
          await sleep(10)
        }
        slowest.push(Math.round(Math.max(...(await Promise.all(frees)))))
        await releaseLock()
        await Promise.all(answers)
      }
    } finally {
      await Promise.all(pools.map((pool) => pool.end({ timeout: 5 })))
    }
    assert.deepEqual(refused, [], `slowest acknowledgement of the other key in each round: ${slowest.join(', ')} ms`)
  })

  test('when every batch is stuck, an increment still queued at its deadline gets 503 and leaves the queue; nothing is written', async () => {
    // Deadline: INCREMENT_MAX_LAG_MS + DATABASE_STATEMENT_TIMEOUT_MS = 1.25 s.
    const env = { INCREMENT_MAX_LAG_MS: '250', DATABASE_STATEMENT_TIMEOUT_MS: '1000' }
    const replicas = await Promise.all([replica(env), replica(env)])
    const releaseLock = await db.holdLock((tx) => tx`lock table increments in share mode`)
    const answers: Array<{ status: number; retryAfter: string | null; ms: number }> = []

    await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        await sleep(i * 25) // a stream: some are sent (and time out), the rest wait in the queue
        const sentAt = Date.now()
        const res = await increment(replicas[i % 2], `stuck-${i}`, 1)
        answers.push({ status: res.status, retryAfter: res.headers.get('retry-after'), ms: Date.now() - sentAt })
      })
    )
    const queued = await Promise.all(replicas.map((server) => metric(server, 'tandem_increments_queued')))
    const lag = await Promise.all(replicas.map((server) => metric(server, 'tandem_increments_persist_lag_seconds')))
    const expired = await Promise.all(
      replicas.map((server) => metric(server, 'tandem_increments_refused_total{reason="deadline"}'))
    )
    await releaseLock()

    assert.deepEqual(
      answers.filter((answer) => answer.status !== 503 || answer.retryAfter !== '1'),
      []
    )
    assert.deepEqual(
      answers.filter((answer) => answer.ms > 1250 + 500),
      [],
      'answered by the deadline'
    )
    assert.deepEqual(
      [queued, lag],
      [
        [0, 0],
        [0, 0]
      ],
      'nothing left in the queues'
    )
    assert.equal(expired[0] + expired[1], 60)
    assert.equal((await db.sql`select count(*)::int as n from increments where key like 'stuck-%'`)[0].n, 0)
    assert.equal((await increment(replicas[0], 'stuck-after', 1)).status, 200)
  })

  test('past INCREMENT_QUEUE_MAX increments waiting in one process, a fast 503 with Retry-After, and nothing written', async () => {
    const capped = await replica({ INCREMENT_QUEUE_MAX: '5', INCREMENT_MAX_LAG_MS: '5000' })
    const releaseLock = await db.holdLock((tx) => tx`lock table increments in share mode`)

    const held = Array.from({ length: 5 }, () => increment(capped, 'within-the-cap', 1))
    let heldAnswered = false
    void Promise.all(held).then(() => {
      heldAnswered = true
    })
    let refused: Response[]
    let answeredFirst: boolean
    try {
      await until(async () => (await metric(capped, 'tandem_increments_queued')) === 5, 'five increments queued', 5000)
      refused = await Promise.all(Array.from({ length: 5 }, () => increment(capped, 'past-the-cap', 1)))
      answeredFirst = !heldAnswered
    } finally {
      await releaseLock()
    }

    assert.deepEqual(
      refused.map((res) => [res.status, res.headers.get('retry-after')]),
      Array(5).fill([503, '1'])
    )
    assert.ok(answeredFirst, 'refused while the queue was still full')
    assert.deepEqual(
      (await Promise.all(held)).map((res) => res.status),
      [200, 200, 200, 200, 200]
    )
    assert.equal(await storedTotal('within-the-cap'), 5)
    assert.equal(await storedTotal('past-the-cap'), undefined)
    assert.equal(await metric(capped, 'tandem_increments_refused_total{reason="queue-full"}'), 5)
  })
})

describe('GET /increment/:key', () => {
  test('answers the total, the persisted total and when it was stored', async () => {
    const key = 'with spaces/and ünïcode ' + 'k'.repeat(170)
    await increment(servers[0], key, 11)

    const res = await request(servers[1].url, 'GET', `/increment/${encodeURIComponent(key)}`)

    assert.equal(res.status, 200)
    assert.equal(res.body.key, key)
    assert.equal(res.body.value, 11)
    assert.equal(res.body.persistedValue, 11)
    assert.ok(Date.now() - Date.parse(res.body.persistedAt) < 60_000)
  })

  test('an unknown key is a 404', async () => {
    const res = await request(servers[0].url, 'GET', '/increment/never-incremented')

    assert.equal(res.status, 404)
    assert.equal(res.body.error, 'not-found')
  })
})

describe('exact sums from many clients through two replicas', () => {
  test('4000 concurrent increments over five hot keys sum exactly, each answer in one serial order', async () => {
    const keys = ['hot-1', 'hot-2', 'hot-3', 'hot-4', 'hot-5']
    const sent = Array.from({ length: 4000 }, (_, i) => ({ key: keys[i % keys.length], value: 1 + (i % 97) }))

    const replies = await inWaves(sent.length, 200, (i) => increment(servers[i % 2], sent[i].key, sent[i].value))

    assert.deepEqual(
      replies.filter((res) => res.status !== 200).map((res) => res.text),
      []
    )
    for (const key of keys) {
      const mine = sent
        .map((s, i) => ({ ...s, total: (replies[i] as Response).body.value as number }))
        .filter((s) => s.key === key)
      const expected = mine.reduce((sum, s) => sum + s.value, 0)
      assert.equal(await storedTotal(key), expected, `${key} stored total`)
      // Positive increments: sorted by the total they saw, each one added exactly its own value.
      mine.sort((x, y) => x.total - y.total)
      mine.forEach((s, index) => assert.equal(s.total - (index ? mine[index - 1].total : 0), s.value))
    }
  })

  test('PostgreSQL is never behind what was acknowledged, under sustained load', async () => {
    const key = 'sustained'
    let acknowledged = 0
    let violations = 0
    let samples = 0
    let running = true
    const sampler = (async () => {
      while (running) {
        const ackedBefore = acknowledged
        const stored = (await storedTotal(key)) ?? 0
        samples++
        if (stored < ackedBefore) violations++
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    })()

    await inWaves(3000, 100, async (i) => {
      const res = await increment(servers[i % 2], key, 1)
      if (res.status === 200) acknowledged++
    })
    running = false
    await sampler

    assert.equal(acknowledged, 3000)
    assert.ok(samples > 5)
    assert.equal(violations, 0, 'a sample found PostgreSQL behind the acknowledged increments')
    const metrics = await request(servers[0].url, 'GET', '/metrics')
    const lag = Number(/^tandem_increments_persist_lag_seconds (\S+)$/m.exec(metrics.text)?.[1])
    assert.ok(lag <= 1, `reported lag ${lag} s within INCREMENT_MAX_LAG_MS`)
    assert.match(metrics.text, /^tandem_increments_per_commit_count \d+$/m)
  })
})

describe('nothing acknowledged is lost', () => {
  /**
   * Keeps `width` increments of 1 in flight, each lane sending its next as soon as it has an answer,
   * until the server stops answering 200; `acked` counts the 200s as they arrive.
   */
  function stream(server: ServerProcess, key: string, width = 100) {
    const state = { sent: 0, acked: 0, statuses: [] as Array<number | string> }
    const lane = async () => {
      for (let status: number | string = 200; status === 200; state.statuses.push(status)) {
        state.sent++
        status = await increment(server, key, 1).then(
          (res) => res.status,
          () => 'network'
        )
        if (status === 200) state.acked++
      }
    }
    return { state, done: Promise.all(Array.from({ length: width }, lane)) }
  }

  async function until(condition: () => boolean) {
    for (const deadline = Date.now() + 30_000; !condition() && Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
  }

  test('kill -9 of the replica in the middle of a stream: every acknowledged increment is in PostgreSQL', async () => {
    const victim = await spawnServer('serve', { DATABASE_URL: db.url })
    const key = 'kill-9'
    const load = stream(victim, key)

    await until(() => load.state.acked >= 500)
    killGroup(victim.child)
    await load.done

    const stored = (await storedTotal(key)) ?? 0
    assert.ok(load.state.statuses.includes('network'), 'the kill cut requests off in flight')
    assert.ok(stored >= load.state.acked, `stored ${stored} covers the ${load.state.acked} acknowledged`)
    assert.ok(stored <= load.state.sent)
  })

  test('SIGTERM drains: every request in flight is answered, and what was acknowledged is stored', async () => {
    const victim = await spawnServer('serve', { DATABASE_URL: db.url })
    const key = 'sigterm'
    const burst = stream(victim, key)

    await until(() => burst.state.acked >= 500)
    const exitCode = victim.stop('SIGTERM')
    await burst.done

    assert.equal(await exitCode, 0)
    assert.equal(await storedTotal(key), burst.state.acked, 'stored exactly what was acknowledged')
    const unexpected = burst.state.statuses.filter((status) => status !== 200 && status !== 503 && status !== 'network')
    assert.deepEqual(unexpected, [])
  })
})
