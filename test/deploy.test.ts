import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { parse } from 'yaml'
import { localNginxConf, nginxBinary, opensslBinary, selfSignedCertificate } from './helpers/nginx.js'
import { projectRoot } from './helpers/servers.js'

// No Docker engine runs here: the deployment files are checked statically (their running
// topology is proven natively by topology.test.ts), and by docker-compose v1's own validation.
const deployDir = path.join(projectRoot, 'deploy')
const read = (file: string) => readFile(path.join(deployDir, file), 'utf8')
// Docker Compose reads YAML merge keys (`<<: *api`), as PyYAML and go-yaml do.
const readCompose = async (file: string) => parse(await read(file), { merge: true })

const composeBinary = '/usr/bin/docker-compose'

function skipReason(missing: string, install: string, what: string): string {
  const reason = `SKIPPED: ${missing} is not installed (apt-get install -y ${install}; .ci/run does) — ${what} did not run`
  console.warn(`\n*** ${reason} ***\n`)
  return reason
}

const composeSkip =
  spawnSync(composeBinary, ['version']).status === 0
    ? undefined
    : skipReason(composeBinary, 'docker-compose', 'the docker-compose config validations')
const tlsSkip = !nginxBinary
  ? skipReason('nginx', 'nginx', 'nginx -t of nginx.conf with tls.conf')
  : !opensslBinary
    ? skipReason('openssl', 'openssl', 'nginx -t of nginx.conf with tls.conf')
    : undefined

/** `docker-compose -f … config` from the repository root, with a password in the environment unless told otherwise. */
function composeConfig(files: string[], env: NodeJS.ProcessEnv = { POSTGRES_PASSWORD: 'not-a-real-password' }) {
  const { POSTGRES_PASSWORD: _, TANDEM_IMAGE: __, ...inherited } = process.env
  return spawnSync(composeBinary, [...files.flatMap((file) => ['-f', `deploy/${file}`]), 'config'], {
    cwd: projectRoot,
    env: { ...inherited, ...env },
    encoding: 'utf8'
  })
}

interface Service {
  image?: string
  build?: unknown
  command?: string | string[]
  environment?: Record<string, string>
  deploy?: {
    replicas?: number
    endpoint_mode?: string
    resources?: { limits?: { cpus?: string | number; memory?: string } }
  }
  networks?: Record<string, { aliases?: string[] } | null> | string[]
  [key: string]: unknown
}

/** Compose's CPU figure ("0.45", 1.5). */
function cpus(service: Service): number {
  const value = Number(service.deploy?.resources?.limits?.cpus)
  assert.ok(value > 0, `a CPU limit, not ${service.deploy?.resources?.limits?.cpus}`)
  return value
}

/** Compose's memory figure in MiB, as Docker reads it: 512M, 1G, 170MiB, 200mb (k/m/g are binary). */
function mebibytes(text: string | undefined): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmg])?i?b?$/i.exec(String(text))
  assert.ok(match, `a memory limit, not ${text}`)
  const scale = { k: 1 / 1024, m: 1, g: 1024 }[(match[2] ?? '').toLowerCase()] ?? 1 / (1024 * 1024)
  return Number(match[1]) * scale
}

const memory = (service: Service) => mebibytes(service.deploy?.resources?.limits?.memory)
const replicas = (service: Service) => service.deploy?.replicas ?? 1
const seconds = (duration: string) => {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(duration)
  assert.ok(match, `a duration, not ${duration}`)
  return Number(match[1]) * { ms: 0.001, s: 1, m: 60 }[match[2] as 'ms' | 's' | 'm']
}
const commandText = (service: Service) => [service.command ?? []].flat().join(' ')

/** The `sed -e '…'` expressions of nginx's start-up command, applied to deploy/nginx/nginx.conf. */
async function nginxConfAsStarted(nginx: Service): Promise<string> {
  const command = commandText(nginx)
  const expressions = [...command.matchAll(/-e '([^']*)'/g)].map((match) => match[1])
  assert.ok(expressions.length > 0, `no sed -e '…' in ${command}`)
  const result = spawnSync(
    'sed',
    expressions.flatMap((expression) => ['-e', expression]),
    {
      input: await read('nginx/nginx.conf'),
      encoding: 'utf8'
    }
  )
  assert.equal(result.status, 0, result.stderr)
  return result.stdout
}

function assertNginxStart(nginx: Service) {
  assert.equal(nginx.image, 'nginx:1.28-alpine')
  const [major, minor, patch = 0] = /^nginx:(\d+)\.(\d+)(?:\.(\d+))?/.exec(nginx.image!)!.slice(1).map(Number)
  assert.ok(major > 1 || minor > 27 || (minor === 27 && patch >= 3), 'nginx >= 1.27.3 reads `resolve` on a server line')
  assert.deepEqual([nginx.command!.slice(0, 2)].flat(), ['sh', '-c'])
  const command = commandText(nginx)
  assert.match(command, /\/etc\/nginx\/tandem\/nginx\.conf > \/etc\/nginx\/nginx\.conf/)
  assert.match(command, /exec nginx -g 'daemon off;'$/)
  // Compose would interpolate a lone $ (and refuse the file): none is needed here.
  assert.doesNotMatch(command, /(^|[^$])\$($|[^$])/)
}

async function assertResolvableUpstream(nginx: Service) {
  const conf = await nginxConfAsStarted(nginx)
  assert.match(conf, /^\s*server api:8080 resolve [^;]*;$/m)
  assert.match(conf, /upstream api \{[^}]*\bzone api \d+k;/)
  assert.match(conf, /^\s*resolver 127\.0\.0\.11 valid=\d+s/m)
  assert.doesNotMatch(conf, /worker_processes auto;/)
}

function assertApiEnvironment(environment: Record<string, string>) {
  assert.match(
    environment.TRUST_PROXY,
    /^[1-9]\d*$/,
    'TRUST_PROXY counts hops (never "true": anyone could claim any address)'
  )
  const url = new URL(environment.DATABASE_URL)
  assert.equal(url.password, '', 'the password goes in DATABASE_PASSWORD, not in the URL')
  assert.equal(url.username, 'tandem')
  assert.ok(environment.DATABASE_PASSWORD)
  assert.ok(
    Object.values(environment).every((value) => typeof value === 'string'),
    'every value a string'
  )
}

describe('deploy/compose.yaml', async () => {
  const compose = await readCompose('compose.yaml')
  const services: Record<string, Service> = compose.services
  const { api, nginx, db, redis } = services

  test('has the balancer, replicated API, PostgreSQL and Redis, and no `name:` (docker-compose v1 refuses it)', () => {
    assert.deepEqual(Object.keys(services).sort(), ['api', 'db', 'nginx', 'redis'])
    assert.equal(compose.name, undefined)
    assert.equal(compose.version, undefined)
    assert.ok(replicas(api) >= 2)
    assert.deepEqual(nginx.ports, [{ target: 9999, published: 9999, protocol: 'tcp', mode: 'host' }])
  })

  test('the API environment: literals but the password, one trusted hop, no password in the URL', () => {
    assert.deepEqual(api.environment, {
      NODE_ENV: 'production',
      HOST: '0.0.0.0',
      PORT: '8080',
      DATABASE_URL: 'postgres://tandem@db:5432/tandem',
      DATABASE_PASSWORD: '${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}',
      DATABASE_POOL_MAX: '10',
      REDIS_URL: 'redis://redis:6379',
      TRUST_PROXY: '1',
      METRICS_PORT: '9464',
      METRICS_HOST: '0.0.0.0'
    })
    assert.equal(api.environment, compose['x-api-env'])
    assertApiEnvironment(api.environment!)
  })

  test('publishes no database port and demands a password instead of a default', () => {
    assert.equal(db.ports, undefined)
    assert.equal(redis.ports, undefined)
    assert.match(db.environment!.POSTGRES_PASSWORD, /^\$\{POSTGRES_PASSWORD:\?/)
  })

  test('keeps writes durable: synchronous commits, Redis AOF synced on every write, never evicted', () => {
    assert.ok(db.command!.includes('synchronous_commit=on'))
    assert.ok(db.command!.includes('fsync=on'))
    const command = redis.command as string[]
    assert.deepEqual(command.slice(1, 5), ['--appendonly', 'yes', '--appendfsync', 'always'])
    assert.equal(command[command.indexOf('--maxmemory-policy') + 1], 'noeviction')
    assert.ok(
      mebibytes(command[command.indexOf('--maxmemory') + 1]) < memory(redis),
      'maxmemory below the container limit'
    )
  })

  test('runs the API in production mode, started after its dependencies', () => {
    assert.equal(api.environment!.NODE_ENV, 'production')
    assert.deepEqual(api.depends_on, ['db', 'redis'])
    assert.deepEqual(nginx.depends_on, ['api'])
  })

  test('stays within what `docker stack deploy` reads (its Compose v3 schema)', () => {
    for (const [name, service] of Object.entries(services)) {
      // Long-form depends_on (`condition:`) is refused: "depends_on must be a list".
      assert.ok(service.depends_on === undefined || Array.isArray(service.depends_on), `${name}: depends_on as a list`)
      // `profiles:` is refused: "Additional property profiles is not allowed" (docker/cli#4721).
      assert.equal(service.profiles, undefined, `${name}: no profiles`)
      // Strings, not numbers, for the resource figures.
      assert.equal(typeof service.deploy?.resources?.limits?.cpus, 'string', `${name}: cpus as a string`)
    }
    assert.equal(compose.configs, undefined, 'docker-compose 1.29 drops `configs:` from the containers')
  })

  test('rolls a Swarm update one replica at a time, new first, back on failure, after the drain', () => {
    const {
      update_config: update,
      rollback_config: rollback,
      restart_policy: restart
    } = api.deploy as Record<string, Record<string, string | number>>
    assert.equal(update.parallelism, 1)
    assert.equal(update.order, 'start-first')
    assert.equal(update.failure_action, 'rollback')
    assert.ok(seconds(String(update.delay)) > 0)
    assert.ok(seconds(String(update.monitor)) > 0)
    assert.equal(rollback.parallelism, 1)
    assert.equal(api.deploy!.endpoint_mode, 'dnsrr', 'nginx sees every replica, not one virtual IP')
    assert.ok(restart.condition)
    assert.ok(seconds(api.stop_grace_period as string) > 10, 'above SHUTDOWN_TIMEOUT_MS (10 s)')
  })

  test('Prometheus and Grafana in an override (no `profiles:`, which `docker stack deploy` refuses), on loopback ports, fed the files of deploy/observability/', async () => {
    const observability = await readCompose('compose.observability.yaml')
    const { prometheus, grafana } = observability.services as Record<string, Service>
    assert.deepEqual(Object.keys(observability.services).sort(), ['grafana', 'prometheus'])
    for (const service of Object.values(observability.services as Record<string, Service>))
      assert.equal(service.profiles, undefined)
    assert.deepEqual(prometheus.ports, ['127.0.0.1:9090:9090'])
    assert.deepEqual(grafana.ports, ['${GRAFANA_ADDRESS:-127.0.0.1}:3000:3000'])
    // The replicas' metrics port: never published, scraped over the Compose network only.
    assert.equal(api.ports, undefined)
    assert.match(await read('observability/prometheus.yml'), new RegExp(`port: ${api.environment!.METRICS_PORT}\\b`))
    const targets = (service: Service) =>
      Object.fromEntries(
        (service.secrets as { source: string; target: string }[]).map(({ source, target }) => [
          target,
          observability.secrets[source].file
        ])
      )
    assert.deepEqual(targets(prometheus), {
      '/etc/prometheus/prometheus.yml': './observability/prometheus.yml',
      '/etc/prometheus/alerts.yml': './observability/alerts.yml'
    })
    assert.deepEqual(targets(grafana), {
      '/etc/grafana/provisioning/datasources/prometheus.yml':
        './observability/grafana/provisioning/datasources/prometheus.yml',
      '/etc/grafana/provisioning/dashboards/tandem.yml': './observability/grafana/provisioning/dashboards/tandem.yml',
      '/etc/grafana/dashboards/tandem.json': './observability/grafana/dashboards/tandem.json'
    })
    for (const file of [...Object.values(targets(prometheus)), ...Object.values(targets(grafana))]) await read(file)
    assert.ok([prometheus.command].flat().includes('--config.file=/etc/prometheus/prometheus.yml'))
    const { environment } = grafana
    assert.equal(environment!.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH, '/etc/grafana/dashboards/tandem.json')
    assert.match(
      await read('observability/grafana/provisioning/dashboards/tandem.yml'),
      /path: \/etc\/grafana\/dashboards$/m
    )
  })

  test('gives nginx its nginx.conf as a file every Compose and Swarm mounts, with `resolve` added to the upstream', async () => {
    assertNginxStart(nginx)
    assert.deepEqual(nginx.secrets, [{ source: 'nginx-conf', target: '/etc/nginx/tandem/nginx.conf' }])
    assert.deepEqual(compose.secrets['nginx-conf'], { file: './nginx/nginx.conf' })
    await assertResolvableUpstream(nginx)
  })
})

describe('deploy/compose.tls.yaml', async () => {
  const tls = await readCompose('compose.tls.yaml')

  test('adds tls.conf, the certificate and :443 to nginx, and nothing else', async () => {
    assert.deepEqual(Object.keys(tls.services), ['nginx'])
    assert.equal(tls.name, undefined)
    const nginx: Service = tls.services.nginx
    assert.deepEqual(nginx.ports, [{ target: 443, published: 443, protocol: 'tcp', mode: 'host' }])
    const targets = Object.fromEntries(
      (nginx.secrets as { source: string; target: string }[]).map(({ source, target }) => [
        target,
        tls.secrets[source].file
      ])
    )
    assert.deepEqual(targets, {
      '/etc/nginx/tandem.d/tls.conf': './nginx/tls.conf',
      '/etc/nginx/tls/tls.crt': './tls/tls.crt',
      '/etc/nginx/tls/tls.key': './tls/tls.key'
    })
    // Where they go is where nginx.conf and tls.conf look.
    assert.match(await read('nginx/nginx.conf'), /include \/etc\/nginx\/tandem\.d\/\*\.conf;/)
    const tlsConf = await read('nginx/tls.conf')
    assert.match(tlsConf, /ssl_certificate \/etc\/nginx\/tls\/tls\.crt;/)
    assert.match(tlsConf, /ssl_certificate_key \/etc\/nginx\/tls\/tls\.key;/)
  })

  test('keeps the certificate and key out of git', async () => {
    const ignore = (await read('tls/.gitignore')).split('\n')
    assert.ok(ignore.includes('*'))
    assert.ok(ignore.includes('!.gitignore'))
  })
})

describe('deploy/compose.rinha.yaml', async () => {
  const rinha = await readCompose('compose.rinha.yaml')
  const services: Record<string, Service> = rinha.services
  const apis = Object.entries(services)
    .filter(([name]) => name.startsWith('api'))
    .map(([, service]) => service)

  test('is nginx on :9999 in front of two API replicas named "api", PostgreSQL and no Redis', () => {
    assert.equal(rinha.name, undefined)
    assert.deepEqual(services.nginx.ports, ['9999:9999'])
    assert.ok(services.db)
    assert.equal(
      apis.reduce((sum, api) => sum + replicas(api), 0),
      2
    )
    for (const api of apis) {
      const aliases = Array.isArray(api.networks) ? [] : (api.networks?.default?.aliases ?? [])
      assert.ok(services.api === api || aliases.includes('api'), 'the upstream name of nginx.conf')
    }
    assert.ok(!Object.values(services).some((service) => service.image?.startsWith('redis')))
    assert.ok(apis.every((api) => api.environment!.REDIS_URL === undefined))
  })

  test('pulls every image by name: no build', () => {
    assert.ok(Object.values(services).every((service) => service.build === undefined && service.image))
    for (const api of apis) assert.equal(api.image, '${TANDEM_IMAGE:-docker.io/tandem/tandem:0.1.0}')
  })

  test('fits the Rinha budget: at most 1.5 CPU and 550 MB over every container', () => {
    const all = Object.values(services)
    const totalCpus = all.reduce((sum, service) => sum + cpus(service) * replicas(service), 0)
    const totalMemory = all.reduce((sum, service) => sum + memory(service) * replicas(service), 0)
    assert.ok(totalCpus <= 1.5 + 1e-9, `${totalCpus} CPU`)
    assert.ok(totalMemory <= 550, `${totalMemory} MB`)
  })

  test('the API environment of compose.yaml, without Redis, its heap inside its memory limit', async () => {
    // The Rinha submission runs no Prometheus: it needs no metrics port.
    const {
      REDIS_URL: _,
      DATABASE_PASSWORD: __,
      METRICS_PORT: ____,
      METRICS_HOST: _____,
      ...shared
    } = (await readCompose('compose.yaml')).services.api.environment
    for (const api of apis) {
      const {
        NODE_OPTIONS: options,
        PASSWORD_HASH_CONCURRENCY: ___,
        DATABASE_PASSWORD: password,
        DATABASE_POOL_MAX: pool,
        LOG_LEVEL: logLevel,
        ...rest
      } = api.environment!
      const { DATABASE_POOL_MAX: sharedPool, ...sharedRest } = shared
      assert.deepEqual(rest, sharedRest)
      // A smaller pool on the Rinha's small PostgreSQL; never a larger one.
      assert.ok(Number(pool) >= 1 && Number(pool) <= Number(sharedPool), `DATABASE_POOL_MAX ${pool}`)
      // The contest's figures are measured without an access line per request; errors still logged.
      assert.equal(logLevel, 'warn')
      assertApiEnvironment(api.environment!)
      assert.equal(password, services.db.environment!.POSTGRES_PASSWORD)
      const heap = Number(/--max-old-space-size=(\d+)/.exec(options)?.[1])
      assert.ok(heap > 0 && heap <= memory(api) * 0.7, `V8 heap ${heap} MB in a ${memory(api)} MB container`)
    }
  })

  test('keeps PostgreSQL durable and small, with connections for both pools', () => {
    const command = services.db.command as string[]
    const setting = (name: string) => command.find((arg) => arg.startsWith(`${name}=`))?.split('=')[1]
    assert.equal(setting('synchronous_commit'), 'on')
    assert.equal(setting('fsync'), 'on')
    const pools = apis.reduce((sum, api) => sum + Number(api.environment!.DATABASE_POOL_MAX) * replicas(api), 0)
    assert.ok(Number(setting('max_connections')) >= pools + apis.length, 'each pool, and a LISTEN connection each')
    assert.ok(mebibytes(setting('shared_buffers')) <= 64)
  })

  test('starts nginx with `resolve` added to the upstream, like compose.yaml', async () => {
    assertNginxStart(services.nginx)
    assert.deepEqual(services.nginx.volumes, ['./nginx/nginx.conf:/etc/nginx/tandem/nginx.conf:ro'])
    await assertResolvableUpstream(services.nginx)
  })
})

describe('every Compose file', async () => {
  const complete = {
    'compose.yaml': await readCompose('compose.yaml'),
    'compose.rinha.yaml': await readCompose('compose.rinha.yaml'),
    'compose.observability.yaml': await readCompose('compose.observability.yaml')
  }

  test('limits the CPU and memory of every service', () => {
    for (const [file, compose] of Object.entries(complete)) {
      for (const [name, service] of Object.entries(compose.services as Record<string, Service>)) {
        assert.ok(cpus(service) > 0 && memory(service) > 0, `${file}: ${name}`)
      }
    }
  })

  for (const files of [
    ['compose.yaml'],
    ['compose.rinha.yaml'],
    ['compose.yaml', 'compose.tls.yaml'],
    ['compose.yaml', 'compose.observability.yaml']
  ]) {
    test(`docker-compose v1 accepts ${files.join(' + ')}`, { skip: composeSkip }, () => {
      const result = composeConfig(files)
      assert.equal(result.status, 0, result.stderr)
      const config = parse(result.stdout)
      for (const [name, service] of Object.entries(config.services as Record<string, Service>)) {
        assert.ok(cpus(service) > 0 && memory(service) > 0, `${name} keeps its limits`)
      }
      if (files.includes('compose.tls.yaml')) {
        const nginx = config.services.nginx
        assert.deepEqual(nginx.ports.map((port: { published: number }) => port.published).sort(), [443, 9999])
        assert.deepEqual(nginx.secrets.map((secret: { target: string }) => secret.target).sort(), [
          '/etc/nginx/tandem.d/tls.conf',
          '/etc/nginx/tandem/nginx.conf',
          '/etc/nginx/tls/tls.crt',
          '/etc/nginx/tls/tls.key'
        ])
        assert.equal(config.services.api.environment.DATABASE_PASSWORD, 'not-a-real-password')
      }
    })
  }

  test('docker-compose v1 refuses compose.yaml without POSTGRES_PASSWORD', { skip: composeSkip }, () => {
    const result = composeConfig(['compose.yaml'], {})
    assert.notEqual(result.status, 0)
    assert.match(result.stderr, /set POSTGRES_PASSWORD/)
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
  // nginx's stdout is a file, which holds -T's dump of the configuration (a log at /dev/stdout
  // could not be opened on a pipe or socket: ENXIO).
  const nginxTest = (dir: string, conf: string, dump = false) => {
    const output = path.join(dir, 'nginx-t.out')
    const fd = openSync(output, 'w')
    try {
      const result = spawnSync(
        nginxBinary!,
        [dump ? '-T' : '-t', '-p', dir, '-c', conf, '-g', `pid ${dir}/nginx.pid; error_log ${dir}/error.log;`],
        {
          stdio: ['ignore', fd, 'pipe'],
          encoding: 'utf8'
        }
      )
      return { status: result.status, stderr: result.stderr, stdout: readFileSync(output, 'utf8') }
    } finally {
      closeSync(fd)
    }
  }

  test('is accepted by nginx -t', { skip: nginxBinary ? undefined : 'nginx is not installed' }, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tandem-nginx-t-'))
    try {
      const conf = path.join(dir, 'nginx.conf')
      await writeFile(conf, await localNginxConf(['127.0.0.1:1'], 1))
      const result = nginxTest(dir, conf)
      assert.equal(result.status, 0, result.stderr)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  test('with tls.conf included and a self-signed certificate, is accepted by nginx -t', { skip: tlsSkip }, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tandem-nginx-tls-'))
    try {
      selfSignedCertificate(dir, 'IP:127.0.0.1')

      const shipped = await localNginxConf(['127.0.0.1:1'], 1)
      const conf = shipped.replace('include /etc/nginx/tandem.d/*.conf;', `include ${dir}/tandem.d/*.conf;`)
      assert.notEqual(conf, shipped, 'nginx.conf no longer includes /etc/nginx/tandem.d/*.conf')
      const tlsShipped = await read('nginx/tls.conf')
      const tls = tlsShipped
        .replace('listen 443 ssl http2;', 'listen 127.0.0.1:2 ssl http2;')
        .replaceAll('/etc/nginx/tls/', `${dir}/`)
      assert.equal(tls.split(dir).length - 1, 2, 'tls.conf no longer has the certificate paths this test rewrites')
      assert.match(tls, /listen 127\.0\.0\.1:2 ssl/, 'tls.conf no longer has the listen line this test rewrites')

      await mkdir(path.join(dir, 'tandem.d'))
      await writeFile(path.join(dir, 'tandem.d', 'tls.conf'), tls)
      await writeFile(path.join(dir, 'nginx.conf'), conf)
      const result = nginxTest(dir, path.join(dir, 'nginx.conf'), true)
      assert.equal(result.status, 0, result.stderr)
      assert.match(result.stdout, /ssl_certificate_key .*tls\.key;/, 'the TLS server was included')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
