import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { request } from './helpers/http.js'
import { inWaves, oneTo } from './helpers/load.js'
import { nginxSkipReason, startNginx, type NginxProcess } from './helpers/nginx.js'
import { redisSkipReason, startRedisServer, type RedisServer } from './helpers/redis.js'
import { spawnServer, type ServerProcess } from './helpers/servers.js'

// The Compose topology, natively: deploy/nginx/nginx.conf in front of two `serve` replicas,
// PostgreSQL and a Redis with AOF, all as processes on this machine.
describe('nginx + two replicas + PostgreSQL + Redis', { skip: nginxSkipReason() ?? redisSkipReason() }, () => {
  let db: TestDatabase
  let redis: RedisServer
  let replicas: ServerProcess[]
  let nginx: NginxProcess

  before(async () => {
    db = await createDatabase()
    redis = await startRedisServer()
    const env = { DATABASE_URL: db.url, REDIS_URL: redis.url, NODE_ENV: 'production' }
    replicas = await Promise.all([1, 2].map(() => spawnServer('serve', env)))
    nginx = await startNginx(replicas.map((replica) => `127.0.0.1:${replica.port}`))
  })

  after(async () => {
    await nginx?.stop()
    await Promise.all((replicas ?? []).map((replica) => replica.stop()))
    await redis?.remove()
    await db?.drop()
  })

  test('the balancer alternates between the replicas and the cluster count stays exact', async () => {
    const replies = await inWaves(2000, 100, () => request(nginx.url, 'GET', '/counter'))

    assert.deepEqual(
      replies.filter((res) => res.status !== 200).map((res) => res.text),
      []
    )
    const numbers = replies.map((res) => res.body.clusterRequests).sort((a, b) => a - b)
    assert.deepEqual(numbers, oneTo(2000))
    const perInstance = new Map<string, number>()
    for (const { body } of replies) perInstance.set(body.instance, (perInstance.get(body.instance) ?? 0) + 1)
    assert.equal(perInstance.size, 2)
    for (const count of perInstance.values()) assert.ok(count > 600, `round robin spreads the load (${count} of 2000)`)
  })

  test('nginx writes one JSON access line per request, naming the replica, with no token or cookie in it', async () => {
    const marker = `/clientes/1/extrato?probe=${Date.now()}`
    const secret = 'Bearer access-log-secret'
    const res = await request(nginx.url, 'GET', marker, {
      headers: { authorization: secret, cookie: 'tandem_session=cookie-secret' }
    })
    assert.equal(res.status, 200)

    const log = await nginx.accessLog()
    const lines = log
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    const line = lines.find((entry) => entry.uri === '/clientes/1/extrato')
    assert.ok(line, `a line for the request in:\n${log.slice(-2000)}`)
    assert.equal(line.method, 'GET')
    assert.equal(line.status, 200)
    assert.equal(typeof line.request_time, 'number')
    assert.ok(
      replicas.some((replica) => line.upstream === `127.0.0.1:${replica.port}`),
      line.upstream
    )
    assert.ok(!log.includes('secret'), 'no token, cookie or query string in the access log')
  })

  test('racing debits through the balancer never cross the limit', async () => {
    await db.sql`insert into clientes (id, limite) values (200, 50)`

    const replies = await inWaves(120, 60, () =>
      request(nginx.url, 'POST', '/clientes/200/transacoes', { json: { valor: 1, tipo: 'd', descricao: 'via nginx' } })
    )

    assert.equal(replies.filter((res) => res.status === 200).length, 50)
    assert.equal(replies.filter((res) => res.status === 422).length, 70)
    const [row] = await db.sql`select saldo from clientes where id = 200`
    assert.equal(row.saldo, -50)
  })
})
