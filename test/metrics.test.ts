import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { freePort } from './helpers/processes.js'
import { signUp } from './helpers/accounts.js'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { request } from './helpers/http.js'
import { logLines, spawnServer, startApp, type ServerProcess } from './helpers/servers.js'
import { until } from './helpers/wait.js'

// What a replica tells its operator: /metrics on a port of its own, one access line per request,
// and a request id to follow one request through nginx and the replica.

let db: TestDatabase
const replicas: ServerProcess[] = []

before(async () => {
  db = await createDatabase()
})

after(async () => {
  await Promise.all(replicas.map((replica) => replica.stop()))
  await db.drop()
})

async function replica(env: Record<string, string>): Promise<ServerProcess> {
  const server = await spawnServer('serve', { DATABASE_URL: db.url, ...env })
  replicas.push(server)
  return server
}

/** One series' value in Prometheus text, e.g. `tandem_rate_limit_refused_total{limit="login-address"}`. */
const value = (text: string, series: string) => {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('METRICS_PORT', () => {
  let server: ServerProcess
  let metricsUrl: string

  before(async () => {
    const port = await freePort()
    metricsUrl = `http://127.0.0.1:${port}`
    server = await replica({
      METRICS_PORT: String(port),
      METRICS_HOST: '127.0.0.1',
      TRUST_PROXY: '1',
      LOGIN_ADDRESS_LIMIT_PER_MINUTE: '2'
    })
  })

  test('serves /metrics there only: the public port answers 404, the metrics port nothing else', async () => {
    const publicMetrics = await request(server.url, 'GET', '/metrics')
    const own = await request(metricsUrl, 'GET', '/metrics')
    const other = await request(metricsUrl, 'GET', '/clientes/1/extrato')

    assert.equal(publicMetrics.status, 404)
    assert.equal(own.status, 200)
    assert.match(own.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
    assert.match(own.text, /^process_start_time_seconds \d+$/m)
    assert.equal(other.status, 404)
  })

  test('counts the database, the limits and the logins', async () => {
    const user = await signUp(server.url)
    const address = { 'x-forwarded-for': '198.51.100.23' }
    const statuses = []
    for (let attempt = 0; attempt < 3; attempt++) {
      statuses.push(
        (
          await request(server.url, 'POST', '/api/sessions', {
            json: { email: user.email, password: 'wrong password' },
            headers: address
          })
        ).status
      )
    }
    assert.deepEqual(statuses, [401, 401, 429])

    const text = (await request(metricsUrl, 'GET', '/metrics')).text
    assert.equal(value(text, 'tandem_rate_limit_refused_total{limit="login-address"}'), 1)
    assert.equal(value(text, 'tandem_accounts_logins_total{outcome="wrong"}'), 2)
    assert.equal(value(text, 'tandem_accounts_logins_total{outcome="ok"}'), 1)
    assert.equal(value(text, 'tandem_accounts_sessions_active'), 1)
    assert.ok(value(text, 'tandem_database_query_duration_seconds_count{outcome="ok"}')! >= 5)
    assert.equal(value(text, 'tandem_database_pool_size'), 10)
    assert.equal(value(text, 'tandem_database_queries_in_flight'), 0)
    assert.equal(value(text, 'tandem_database_up'), 1)
    assert.equal(value(text, 'tandem_increments_max_lag_seconds'), 1)
  })

  test('a port already taken is logged, and the replica serves the API all the same', async () => {
    const port = Number(new URL(metricsUrl).port)
    const second = await replica({ METRICS_PORT: String(port), LOG_LEVEL: 'info' })

    assert.equal((await request(second.url, 'GET', '/clientes/1/extrato')).status, 200)
    // stdout goes out in batches (at most 200 ms late): wait for the line, within a bound.
    await until(
      () =>
        logLines(second.output()).some(
          (line) => line.msg === 'metrics port unavailable: this process serves no /metrics' && line.port === port
        ),
      `the warning about port ${port} in the log`,
      5000
    )
  })
})

describe('access lines and request ids', () => {
  test('in production, one line per request at info: method, route, path, status, time, replica and request id; no query, token or cookie', async () => {
    const server = await replica({ NODE_ENV: 'production', LOG_LEVEL: 'info' })
    const res = await request(server.url, 'GET', '/clientes/2/extrato?token=query-secret', {
      headers: { authorization: 'Bearer header-secret', cookie: 'tandem_session=cookie-secret' }
    })
    assert.equal(res.status, 200)
    const id = res.headers.get('x-request-id')
    assert.match(id ?? '', /^[0-9a-f-]{36}$/)

    await until(() => logLines(server.output()).some((line) => line.reqId === id), 'the access line')
    const line = logLines(server.output()).find((candidate) => candidate.reqId === id)!
    assert.equal(line.level, 30)
    assert.equal(line.msg, 'request')
    assert.deepEqual(
      [line.method, line.route, line.path, line.status],
      ['GET', '/clientes/:id/extrato', '/clientes/2/extrato', 200]
    )
    assert.equal(typeof line.ms, 'number')
    assert.equal(typeof line.replica, 'string')
    assert.ok(!server.output().includes('secret'), 'no query string, token or cookie logged')
  })

  test('ACCESS_LOG=false writes none', async () => {
    const server = await replica({ NODE_ENV: 'production', LOG_LEVEL: 'info', ACCESS_LOG: 'false' })
    const res = await request(server.url, 'GET', '/clientes/3/extrato')
    assert.equal(res.status, 200)
    assert.ok(!logLines(server.output()).some((line) => line.msg === 'request'))
  })

  test("the trusted proxy's X-Request-Id is the request's id; a client's own, without a trusted proxy, is not", async () => {
    const behindProxy = await startApp(db.sql, { TRUST_PROXY: '1' })
    const direct = await startApp(db.sql, { TRUST_PROXY: 'false' })
    try {
      const proxied = await request(behindProxy.url, 'GET', '/health', { headers: { 'x-request-id': 'nginx-7f3a9c' } })
      const forged = await request(direct.url, 'GET', '/health', { headers: { 'x-request-id': 'forged-id' } })
      const malformed = await request(behindProxy.url, 'GET', '/health', {
        headers: { 'x-request-id': 'x'.repeat(200) }
      })

      assert.equal(proxied.headers.get('x-request-id'), 'nginx-7f3a9c')
      assert.match(forged.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/)
      assert.match(malformed.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/)
    } finally {
      await Promise.all([behindProxy.app.close(), direct.app.close()])
    }
  })
})
