import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { parse, parseAllDocuments } from 'yaml'
import { localNginxConf, nginxBinary } from './helpers/nginx.js'
import { projectRoot } from './helpers/servers.js'

// No Docker engine runs here: the deployment files are checked statically (their running
// topology is proven natively by topology.test.ts).
const read = (file: string) => readFile(path.join(projectRoot, 'deploy', file), 'utf8')

describe('deploy/compose.yaml', async () => {
  const compose = parse(await read('compose.yaml'))
  const { api, nginx, db, redis } = compose.services

  test('has the balancer, replicated API, PostgreSQL and Redis', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['api', 'db', 'nginx', 'redis'])
    assert.ok(api.deploy.replicas >= 2)
    assert.deepEqual(nginx.ports, ['9999:9999'])
  })

  test('publishes no database port and demands a password instead of a default', () => {
    assert.equal(db.ports, undefined)
    assert.equal(redis.ports, undefined)
    assert.match(db.environment.POSTGRES_PASSWORD, /^\$\{POSTGRES_PASSWORD:\?/)
    assert.match(api.environment.DATABASE_URL, /\$\{POSTGRES_PASSWORD:\?/)
  })

  test('keeps writes durable: synchronous commits, Redis AOF synced on every write', () => {
    assert.ok(db.command.includes('synchronous_commit=on'))
    assert.deepEqual(redis.command.slice(1, 5), ['--appendonly', 'yes', '--appendfsync', 'always'])
  })

  test('runs the API in production mode and waits for healthy dependencies', () => {
    assert.equal(api.environment.NODE_ENV, 'production')
    assert.equal(api.depends_on.db.condition, 'service_healthy')
  })
})

describe('deploy/k8s/tandem.yaml', async () => {
  const documents = parseAllDocuments(await read('k8s/tandem.yaml')).map((doc) => doc.toJS())
  const find = (kind: string, name: string) => documents.find((doc) => doc.kind === kind && doc.metadata.name === name)

  test('parses into the API Deployment and Services, and StatefulSets for PostgreSQL and Redis', () => {
    assert.ok(documents.every((doc) => doc.apiVersion && doc.kind && doc.metadata?.name))
    for (const [kind, name] of [['Deployment', 'tandem-api'], ['Service', 'tandem-api'], ['StatefulSet', 'tandem-db'], ['StatefulSet', 'tandem-redis']]) {
      assert.ok(find(kind, name), `${kind} ${name}`)
    }
  })

  test('probes readiness on /ready and liveness on /health, secrets from a Secret', () => {
    const api = find('Deployment', 'tandem-api').spec.template.spec.containers[0]
    assert.equal(api.readinessProbe.httpGet.path, '/ready')
    assert.equal(api.livenessProbe.httpGet.path, '/health')
    assert.ok(api.env.some((variable: { valueFrom?: { secretKeyRef?: unknown } }) => variable.valueFrom?.secretKeyRef))
  })
})

describe('deploy/Dockerfile', async () => {
  const dockerfile = await read('Dockerfile')

  test('runs one replica, as a non-root user, in production mode', () => {
    assert.match(dockerfile, /^USER node$/m)
    assert.match(dockerfile, /^ENV NODE_ENV=production HOST=0\.0\.0\.0/m)
    assert.match(dockerfile, /^CMD \["node", "--enable-source-maps", "dist\/main\.js", "serve"\]$/m)
  })
})

describe('deploy/nginx/nginx.conf', () => {
  test('is accepted by nginx -t', { skip: nginxBinary ? undefined : 'nginx is not installed' }, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tandem-nginx-t-'))
    try {
      const conf = path.join(dir, 'nginx.conf')
      await writeFile(conf, await localNginxConf(['127.0.0.1:1'], 1))
      const result = spawnSync(nginxBinary!, ['-t', '-p', dir, '-c', conf, '-g', `pid ${dir}/nginx.pid; error_log ${dir}/error.log;`], { encoding: 'utf8' })
      assert.equal(result.status, 0, result.stderr)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
