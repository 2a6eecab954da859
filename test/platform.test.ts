import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { request } from './helpers/http.js'
import { inWaves } from './helpers/load.js'
import { spawnServer, type ServerProcess } from './helpers/servers.js'

let db: TestDatabase
let cluster: ServerProcess

before(async () => {
  db = await createDatabase()
  cluster = await spawnServer('start', { DATABASE_URL: db.url, WORKERS: '2' })
})

after(async () => {
  await cluster.stop()
  await db.drop()
})

describe('metrics in the embedded cluster', () => {
  test('any worker answers /metrics with the figures of all workers added up', async () => {
    const answers = await inWaves(40, 8, () => request(cluster.url, 'GET', '/counter'))
    const instances = new Set(answers.map((res) => res.body.instance))
    assert.equal(instances.size, 2, 'both workers served')

    const res = await request(cluster.url, 'GET', '/metrics')

    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
    assert.match(res.text, /^tandem_cluster_requests_total\{backend="postgres"\} 40$/m)
    assert.match(
      res.text,
      /^http_request_duration_seconds_count\{method="GET",route="\/counter",status_code="200"\} 40$/m
    )
    assert.match(res.text, /^tandem_cluster_requests_reservation_size_sum 40$/m)
    // prom-client leaves start times out of the sum: the primary's, the cluster's own, stands in.
    assert.match(res.text, /^process_start_time_seconds \d{10}$/m)
    assert.doesNotMatch(res.text, /^nodejs_active_handles_total /m, 'no gauge named like a counter (promtool lint)')
  })
})

describe('documentation', () => {
  test('/openapi.json describes every API route with its schemas', async () => {
    const res = await request(cluster.url, 'GET', '/openapi.json')

    assert.equal(res.status, 200)
    assert.equal(res.body.openapi, '3.1.0')
    const paths = Object.keys(res.body.paths).sort()
    assert.deepEqual(paths, [
      '/api/attendance/sheet/new',
      '/api/attendance/sheet/{id}',
      '/api/attendance/sheet/{id}/events',
      '/api/attendance/sheet/{id}/status',
      '/api/attendance/sheet/{id}/student/deletion',
      '/api/attendance/sheet/{id}/student/registration',
      '/api/attendance/sheet/{id}/students',
      '/api/attendance/sheet/{id}/students.csv',
      '/api/attendance/sheets/{courseId}',
      '/api/course_units',
      '/api/course_units/my',
      '/api/department/all',
      '/api/department/{id}/course_units',
      '/api/increment',
      '/api/sessions',
      '/api/users',
      '/api/users/me',
      '/api/users/me/password',
      '/clientes/{id}/extrato',
      '/clientes/{id}/transacoes',
      '/counter',
      '/increment',
      '/increment/{key}'
    ])
    assert.deepEqual(res.body.paths['/api/attendance/sheet/{id}/student/registration'].post.tags, ['attendance'])
    assert.deepEqual(res.body.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer' })
    const body = res.body.paths['/clientes/{id}/transacoes'].post.requestBody.content['application/json'].schema
    assert.deepEqual(body.required, ['valor', 'tipo', 'descricao'])
  })

  test('/documentation serves Swagger UI', async () => {
    const res = await request(cluster.url, 'GET', '/documentation/')

    assert.equal(res.status, 200)
    assert.match(res.text, /swagger/i)
  })
})
