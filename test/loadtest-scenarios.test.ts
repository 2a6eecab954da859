import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { launchMain, startReplica, type AppReplica } from './helpers/servers.js'

/**
 * A plain TCP balancer on loopback: each connection goes to the next replica in turn, as nginx's
 * round robin does, with no header of its own (the replicas see the load generator's address).
 */
async function roundRobin(ports: number[]) {
  let next = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(ports[next++ % ports.length], '127.0.0.1')
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('error', () => {})
      socket.on('close', () => {
        sockets.delete(socket)
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}

/** `node dist/main.js loadtest <scenario> --target <url> …`: its exit code and what it printed. */
async function loadtest(scenario: string, target: string, ...flags: string[]) {
  const run = launchMain(
    `loadtest ${scenario}`,
    ['loadtest', scenario, '--target', target, '--seed', '7', ...flags],
    {}
  )
  const timer = setTimeout(() => run.child.kill('SIGKILL'), 40_000)
  const code = await run.exited
  clearTimeout(timer)
  return { code, output: run.output() }
}

/** The counter numbers a replica handed out, from its metrics. */
async function counterAnswers(replica: AppReplica): Promise<number> {
  const metrics = await (await fetch(`${replica.url}/metrics`)).text()
  return Number(/^tandem_cluster_requests_total\{[^}]*\} (\d+)$/m.exec(metrics)?.[1] ?? 0)
}

describe('loadtest scenarios against two replicas on one database', () => {
  let db: TestDatabase
  let replicas: AppReplica[]
  let balancer: Awaited<ReturnType<typeof roundRobin>>

  before(async () => {
    db = await createDatabase()
    // The counter in PostgreSQL, not the shared Redis: another test's GET /counter there would be a gap here.
    replicas = [await startReplica({ DATABASE_URL: db.url }), await startReplica({ DATABASE_URL: db.url })]
    balancer = await roundRobin(replicas.map((replica) => replica.port))
  })

  after(async () => {
    await balancer?.close()
    await Promise.all((replicas ?? []).map((replica) => replica.stop()))
    await db?.drop()
  })

  test('counter: every number once and consecutive across both replicas, exit 0', async () => {
    const [{ value: before }] = await db.sql<{ value: string }[]>`select value from counters where name = 'requests'`

    const { code, output } = await loadtest('counter', balancer.url, '--time-scale', '0.1')

    assert.equal(code, 0, output)
    const served = await Promise.all(replicas.map(counterAnswers))
    assert.ok(
      served.every((n) => n > 0),
      `both replicas answered: ${served}`
    )
    const [{ value: now }] = await db.sql<{ value: string }[]>`select value from counters where name = 'requests'`
    assert.equal(Number(now) - Number(before), served[0] + served[1])
  })

  test('increments: every key stores exactly its acknowledged increments, exit 0', async () => {
    const { code, output } = await loadtest('increments', balancer.url, '--time-scale', '0.1')

    assert.equal(code, 0, output)
    const [{ keys }] = await db.sql<{ keys: number }[]>`select count(*)::int as keys from increments`
    assert.ok(keys > 4, `hot and cold keys stored: ${keys}`)
  })

  test('attendance: 40 sheets, every sign-in listed once and announced on its stream, exit 0', async () => {
    const { code, output } = await loadtest('attendance', balancer.url, '--time-scale', '0.1')

    assert.equal(code, 0, output)
    const sheets = await db.sql<{ students: number }[]>`
      select count(r.*)::int as students from attendance_sheets s left join registrations r on r.sheet_id = s.id
       group by s.id`
    assert.equal(sheets.length, 40)
    assert.ok(
      sheets.every((sheet) => sheet.students > 0),
      'every class has students'
    )
  })
})

describe('loadtest counter against a counter that breaks its contract', () => {
  /** A /counter whose `n`th answer carries number `numberOf(n)`. */
  async function fakeCounter(numberOf: (n: number) => number) {
    let answered = 0
    const server = http.createServer((request, response) => {
      if (request.url !== '/counter') return response.writeHead(404).end()
      const n = numberOf(++answered)
      if (request.headers.accept === 'text/plain')
        return response
          .writeHead(200, { 'content-type': 'text/plain' })
          .end(
            `You are talking to instance fake:1#0. This is request ${n} to this instance and request ${n} to the cluster.\n`
          )
      const body = { instance: 'fake:1#0', instanceRequests: n, clusterRequests: n }
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as net.AddressInfo
    return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(resolve)) }
  }

  test('a number handed out twice fails the run: exit 1, naming it', async () => {
    const fake = await fakeCounter((n) => (n > 20 ? n - 1 : n)) // 20 twice
    try {
      const { code, output } = await loadtest('counter', fake.url, '--time-scale', '0.05')

      assert.equal(code, 1, output)
      assert.match(output, /cluster-number-twice/)
    } finally {
      await fake.close()
    }
  })

  test('a number never handed out fails the run: exit 1, naming the gap', async () => {
    const fake = await fakeCounter((n) => (n >= 20 ? n + 1 : n)) // no 20
    try {
      const { code, output } = await loadtest('counter', fake.url, '--time-scale', '0.05')

      assert.equal(code, 1, output)
      assert.match(output, /cluster-number-gap/)
    } finally {
      await fake.close()
    }
  })
})
