import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { signUp } from '../../../test/helpers/accounts.js'
import { createDatabase, type TestDatabase } from '../../../test/helpers/database.js'
import { request, type Response } from '../../../test/helpers/http.js'
import { inWaves } from '../../../test/helpers/load.js'
import { killGroup, spawnServer, type ServerProcess } from '../../../test/helpers/servers.js'

let db: TestDatabase
let servers: ServerProcess[]
let auth: Record<string, string>

const increment = (server: ServerProcess, key: string, value: unknown, headers = auth) =>
  request(server.url, 'POST', '/increment', { json: { key, value }, headers })

async function storedTotal(key: string): Promise<number | undefined> {
  const [row] = await db.sql`select value from increments where key = ${key}`
  return row ? Number(row.value) : undefined
}

before(async () => {
  db = await createDatabase()
  servers = await Promise.all([1, 2].map(() => spawnServer('serve', { DATABASE_URL: db.url })))
  auth = (await signUp(servers[0].url)).bearer
})

after(async () => {
  await Promise.all(servers.map((server) => server.stop()))
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
      assert.deepEqual([...await db.sql`select key from increments where key in ('k', '', ${'x'.repeat(201)})`], [])
    })
  }

  test('a total that would leave the exact integer range gets 422; other keys in the same moment still count', async () => {
    await db.sql`insert into increments (key, value) values ('huge', 9007199254740000)`

    const [huge, ...others] = await Promise.all([
      increment(servers[0], 'huge', 2147483647),
      ...Array.from({ length: 5 }, () => increment(servers[0], 'neighbour', 1))
    ])

    assert.equal(huge.status, 422)
    assert.deepEqual(others.map((res) => res.status), Array(5).fill(200))
    assert.equal(await storedTotal('huge'), 9007199254740000)
    assert.equal(await storedTotal('neighbour'), 5)
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

    assert.deepEqual(replies.filter((res) => res.status !== 200).map((res) => res.text), [])
    for (const key of keys) {
      const mine = sent.map((s, i) => ({ ...s, total: (replies[i] as Response).body.value as number })).filter((s) => s.key === key)
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
        status = await increment(server, key, 1).then((res) => res.status, () => 'network')
        if (status === 200) state.acked++
      }
    }
    return { state, done: Promise.all(Array.from({ length: width }, lane)) }
  }

  async function until(condition: () => boolean) {
    for (const deadline = Date.now() + 30_000; !condition() && Date.now() < deadline; ) {
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
