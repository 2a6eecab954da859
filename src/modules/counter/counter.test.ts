import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createDatabase, type TestDatabase } from '../../../test/helpers/database.js'
import { request, type Response } from '../../../test/helpers/http.js'
import { inWaves, oneTo } from '../../../test/helpers/load.js'
import { startStoppableDatabase, type StoppableDatabase } from '../../../test/helpers/postgres.js'
import { redisSkipReason, startRedisServer, type RedisServer } from '../../../test/helpers/redis.js'
import { startReplica, type AppReplica } from '../../../test/helpers/servers.js'

interface CounterReply {
  instance: string
  instanceRequests: number
  clusterRequests: number
}

const burst = 3000

/** `count` counter requests, `width` at a time, spread round robin over the replicas. */
async function hammer(servers: AppReplica[], count: number, width = 150): Promise<Response<CounterReply>[]> {
  return inWaves(count, width, (index) => request<CounterReply>(servers[index % servers.length].url, 'GET', '/counter'))
}

function assertExact(replies: Response<CounterReply>[], firstNumber: number) {
  assert.deepEqual(
    replies.filter((res) => res.status !== 200).map((res) => res.text),
    []
  )
  const cluster = replies.map((res) => res.body.clusterRequests).sort((a, b) => a - b)
  assert.deepEqual(
    cluster,
    oneTo(replies.length).map((n) => n + firstNumber - 1),
    'distinct, consecutive cluster numbers'
  )
  const byInstance = new Map<string, number[]>()
  for (const { body } of replies)
    byInstance.set(body.instance, [...(byInstance.get(body.instance) ?? []), body.instanceRequests])
  assert.ok(byInstance.size >= 2, 'answers came from several processes')
  for (const [instance, answers] of byInstance) {
    const numbers = answers.sort((a, b) => a - b)
    assert.deepEqual(numbers, oneTo(numbers.length), `instance ${instance} counts 1..n`)
  }
}

// Replicas in this process, each with its own pool and Redis connection: two of them are two replicas.
const twoReplicas = (env: Record<string, string>) => Promise.all([1, 2].map(() => startReplica(env)))
const stopAll = (servers: AppReplica[]) => Promise.all(servers.map((server) => server.stop()))
const next = async (server: AppReplica) =>
  (await request<CounterReply>(server.url, 'GET', '/counter')).body.clusterRequests

describe('counter on PostgreSQL (no REDIS_URL)', () => {
  let db: TestDatabase
  let servers: AppReplica[]

  before(async () => {
    db = await createDatabase()
    servers = await twoReplicas({ DATABASE_URL: db.url })
  })
  after(async () => {
    await stopAll(servers)
    await db.drop()
  })

  test(`${burst} concurrent requests over two replicas get ${burst} distinct consecutive numbers`, async () => {
    assertExact(await hammer(servers, burst), 1)
    const [row] = await db.sql`select value::int from counters where name = 'requests'`
    assert.equal(row.value, burst, 'the stored count is the last number handed out')
  })

  test('with Accept: text/plain the answer is one line of text', async () => {
    const res = await request(servers[0].url, 'GET', '/counter', { headers: { accept: 'text/plain' } })

    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
    assert.match(
      res.text,
      /^You are talking to instance [^:]+:\d+#0\. This is request \d+ to this instance and request \d+ to the cluster\.\n$/
    )
  })

  test('the cluster count survives a restart of every replica', async () => {
    const last = await next(servers[0])
    await stopAll(servers)

    servers = await twoReplicas({ DATABASE_URL: db.url })

    assert.equal(await next(servers[1]), last + 1)
  })
})

describe('counter when PostgreSQL goes away and comes back', () => {
  let database: StoppableDatabase
  let server: AppReplica

  before(async () => {
    database = await startStoppableDatabase()
    server = await startReplica({ DATABASE_URL: database.url })
  })
  after(async () => {
    await server.stop()
    await database.remove()
  })

  test('answers a fast JSON 503 while it is down, then carries on without a gap', async () => {
    const before = await next(server)
    await database.stop()

    const down = await request(server.url, 'GET', '/counter')
    assert.equal(down.status, 503)
    assert.equal(down.body.error, 'unavailable')

    await database.start()
    assert.equal(await next(server), before + 1, 'a failed reservation used no number')
  })
})

describe('counter on Redis (REDIS_URL)', { skip: redisSkipReason() }, () => {
  let redis: RedisServer
  let db: TestDatabase
  let servers: AppReplica[]
  const env = () => ({ DATABASE_URL: db.url, REDIS_URL: redis.url })

  before(async () => {
    redis = await startRedisServer()
    db = await createDatabase()
    servers = await twoReplicas(env())
  })
  after(async () => {
    await stopAll(servers)
    await redis.remove()
    await db.drop()
  })

  test(`${burst} concurrent requests over two replicas get ${burst} distinct consecutive numbers`, async () => {
    assertExact(await hammer(servers, burst), 1)
  })

  test('the count survives a restart of every replica and of Redis (AOF)', async () => {
    const last = await next(servers[0])
    await stopAll(servers)
    await redis.stop()

    await redis.start()
    servers = await twoReplicas(env())

    assert.equal(await next(servers[1]), last + 1)
  })

  test('answers a fast JSON 503 while Redis is down, and recovers without a restart', async () => {
    const before = await next(servers[0])
    await redis.stop()

    const down = await request(servers[0].url, 'GET', '/counter')
    assert.equal(down.status, 503)
    assert.equal(down.body.error, 'unavailable')
    // Only the counter needs Redis: the replica stays in rotation for every other route, and says why.
    const ready = await request(servers[0].url, 'GET', '/ready')
    assert.equal(ready.status, 200)
    assert.deepEqual(ready.body, { status: 'degraded', database: 'up', redis: 'down' })

    await redis.start()
    const recovered = await waitFor(async () => await request<CounterReply>(servers[0].url, 'GET', '/counter'))
    assert.equal(recovered.body.clusterRequests, before + 1)
  })
})

/** Retries while the answer is a 503 (a reconnect takes a moment), for at most 10 s. */
async function waitFor(attempt: () => Promise<Response<CounterReply>>): Promise<Response<CounterReply>> {
  for (const deadline = Date.now() + 10_000; ;) {
    const res = await attempt()
    if (res.status !== 503 || Date.now() > deadline) return res
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
