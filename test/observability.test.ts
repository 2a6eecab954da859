import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { parse, stringify } from 'yaml'
import { freePort } from './helpers/processes.js'
import { signUp } from './helpers/accounts.js'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { request, type Response as Reply } from './helpers/http.js'
import { redisServerBinary, startRedisServer, type RedisServer } from './helpers/redis.js'
import { projectRoot, spawnServer, type ServerProcess } from './helpers/servers.js'
import { until } from './helpers/wait.js'

// deploy/observability/ proven by Prometheus itself: promtool checks the scrape config, the alerts
// and their unit tests, and a real Prometheus scrapes two real replicas (the shipped config, its
// DNS discovery swapped for their ports) while traffic goes through every module; every dashboard
// and alert expression is then evaluated by it.
const observabilityDir = path.join(projectRoot, 'deploy', 'observability')
const shipped = (file: string) => path.join(observabilityDir, file)
const prometheusBinary = '/usr/bin/prometheus'
const promtoolBinary = '/usr/bin/promtool'

const skip = (() => {
  const missing = [prometheusBinary, promtoolBinary].filter((binary) => !existsSync(binary))
  if (missing.length === 0) return undefined
  const reason = `SKIPPED: ${missing.join(' and ')} not installed (apt-get install -y prometheus; .ci/run does) — the Prometheus, alert and dashboard checks did not run`
  console.warn(`\n*** ${reason} ***\n`)
  return reason
})()

function promtool(args: string[], input?: string) {
  const result = spawnSync(promtoolBinary, args, { cwd: projectRoot, input, encoding: 'utf8', timeout: 60_000 })
  return { status: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}`.trim() }
}

interface Rule {
  alert?: string
  record?: string
  expr: string
  for?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}
interface RuleTest {
  alertname: string
  eval_time: string
  exp_alerts?: unknown[]
}
interface Target {
  expr?: string
  refId?: string
  datasource?: { type?: string; uid?: string }
}
interface Panel {
  id?: number
  type?: string
  title?: string
  datasource?: { type?: string; uid?: string }
  targets?: Target[]
}

async function alertRules(): Promise<Rule[]> {
  const { groups } = parse(await readFile(shipped('alerts.yml'), 'utf8')) as {
    groups: { name: string; rules: Rule[] }[]
  }
  return groups.flatMap((group) => group.rules).filter((rule) => rule.alert)
}

async function dashboard(): Promise<{ panels: Panel[]; templating?: { list?: { name: string }[] } }> {
  return JSON.parse(await readFile(shipped('grafana/dashboards/tandem.json'), 'utf8'))
}

/** A dashboard expression as Grafana sends it: its variables replaced (every replica selected). */
function asQueried(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$__interval', '15s')
    .replaceAll('$__range', '5m')
    .replaceAll('$instance', '.*')
}

describe('deploy/observability/ under promtool', { skip }, () => {
  test('prometheus.yml (with the rule files it names) passes promtool check config, without a warning', () => {
    const result = promtool(['check', 'config', 'deploy/observability/prometheus.yml'])
    assert.equal(result.status, 0, result.output)
    assert.match(result.output, /SUCCESS: 1 rule files found/)
    assert.doesNotMatch(result.output, /warn/i)
  })

  test('alerts.yml passes promtool check rules, without a warning', () => {
    const result = promtool(['check', 'rules', 'deploy/observability/alerts.yml'])
    assert.equal(result.status, 0, result.output)
    assert.doesNotMatch(result.output, /warn/i)
  })

  test('the unit tests of the alerts pass (promtool test rules)', () => {
    const result = promtool(['test', 'rules', 'deploy/observability/alerts.test.yml'])
    assert.equal(result.status, 0, result.output)
    assert.match(result.output, /SUCCESS/)
  })

  test('every alert has a severity, summary, description and what_to_do, and a `for`', async () => {
    const rules = await alertRules()
    assert.ok(rules.length >= 7, `${rules.length} alerts`)
    for (const rule of rules) {
      assert.match(rule.labels?.severity ?? '', /^(critical|warning)$/, `${rule.alert}: severity`)
      for (const annotation of ['summary', 'description', 'what_to_do'])
        assert.ok(rule.annotations?.[annotation], `${rule.alert}: ${annotation}`)
      assert.match(rule.for ?? '', /^\d+[smh]$/, `${rule.alert}: for`)
    }
  })

  test('every alert has a unit test in which it fires, and one in which it does not', async () => {
    const alerts = (await alertRules()).map((rule) => rule.alert!)
    const { rule_files: ruleFiles, tests } = parse(await readFile(shipped('alerts.test.yml'), 'utf8')) as {
      rule_files: string[]
      tests: { alert_rule_test?: RuleTest[] }[]
    }
    assert.deepEqual(ruleFiles, ['alerts.yml'])
    const cases = tests.flatMap((unit) => unit.alert_rule_test ?? [])
    const firing = new Set(cases.filter((entry) => (entry.exp_alerts ?? []).length > 0).map((entry) => entry.alertname))
    const quiet = new Set(
      cases.filter((entry) => (entry.exp_alerts ?? []).length === 0).map((entry) => entry.alertname)
    )
    assert.deepEqual(
      alerts.filter((alert) => !firing.has(alert)),
      [],
      'alerts without a case in which they fire'
    )
    assert.deepEqual(
      alerts.filter((alert) => !quiet.has(alert)),
      [],
      'alerts without a case in which they do not fire'
    )
    assert.deepEqual(
      [...firing, ...quiet].filter((alert) => !alerts.includes(alert)),
      [],
      'cases of alerts that do not exist'
    )
  })
})

describe('the Grafana dashboard and its provisioning', () => {
  test('panels, each with the prometheus data source and expressions; no duplicate ids', async () => {
    const { panels } = await dashboard()
    assert.ok(panels.length > 0)
    for (const panel of panels) {
      const name = `panel ${panel.id} "${panel.title}"`
      assert.ok(panel.title, `${name}: a title`)
      assert.match(panel.type ?? '', /^(timeseries|stat)$/, `${name}: type`)
      assert.deepEqual(panel.datasource, { type: 'prometheus', uid: 'prometheus' }, `${name}: datasource`)
      assert.ok((panel.targets ?? []).length > 0, `${name}: targets`)
      for (const target of panel.targets!) {
        assert.ok(target.expr?.trim(), `${name}: target ${target.refId} has an expr`)
        if (target.datasource)
          assert.deepEqual(target.datasource, panel.datasource, `${name}: target ${target.refId} datasource`)
      }
      assert.equal(
        new Set(panel.targets!.map((target) => target.refId)).size,
        panel.targets!.length,
        `${name}: distinct refIds`
      )
    }
    const ids = panels.map((panel) => panel.id)
    assert.ok(
      ids.every((id) => Number.isInteger(id)),
      'every panel has an id'
    )
    assert.equal(new Set(ids).size, ids.length, `duplicate panel ids: ${ids}`)
  })

  test('the data source the panels name is the one Grafana is given, and the dashboard is where the provider looks', async () => {
    const { datasources } = parse(await readFile(shipped('grafana/provisioning/datasources/prometheus.yml'), 'utf8'))
    assert.deepEqual(
      datasources.map(({ uid, type, url, isDefault }: Record<string, unknown>) => ({ uid, type, url, isDefault })),
      [{ uid: 'prometheus', type: 'prometheus', url: 'http://prometheus:9090', isDefault: true }]
    )
    const { providers } = parse(await readFile(shipped('grafana/provisioning/dashboards/tandem.yml'), 'utf8'))
    assert.equal(providers[0].type, 'file')
    const { environment } = parse(
      await readFile(path.join(projectRoot, 'deploy', 'compose.observability.yaml'), 'utf8')
    ).services.grafana
    assert.equal(path.posix.dirname(environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH), providers[0].options.path)
  })
})

interface PrometheusServer {
  url: string
  child: ChildProcess
  output(): string
}

/** Prometheus' HTTP API: the `data` of a successful answer; throws with the error otherwise. */
async function api<T>(prometheus: PrometheusServer, pathAndQuery: string): Promise<T> {
  const res = await fetch(`${prometheus.url}${pathAndQuery}`, { signal: AbortSignal.timeout(10_000) })
  const body = (await res.json()) as { status: string; data: T; error?: string; errorType?: string }
  if (body.status !== 'success') throw new Error(`${pathAndQuery}: ${body.errorType}: ${body.error}`)
  return body.data
}

interface QueryResult {
  resultType: string
  result: { metric: Record<string, string>; value: [number, string] }[]
}
const query = (prometheus: PrometheusServer, expr: string) =>
  api<QueryResult>(prometheus, `/api/v1/query?query=${encodeURIComponent(expr)}`)

interface ActiveTarget {
  labels: Record<string, string>
  scrapeUrl: string
  health: string
  lastError: string
  lastScrape: string
}
const tandemTargets = async (prometheus: PrometheusServer) =>
  (await api<{ activeTargets: ActiveTarget[] }>(prometheus, '/api/v1/targets?state=active')).activeTargets.filter(
    (target) => target.labels.job === 'tandem'
  )

describe('a real Prometheus scraping two replicas with the shipped configuration', { skip }, () => {
  let db: TestDatabase
  let redis: RedisServer | undefined
  let dir: string
  let prometheus: PrometheusServer
  const replicas: { server: ServerProcess; metricsPort: number }[] = []
  const streams: AbortController[] = []

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tandem-prometheus-'))
    db = await createDatabase()
    // The counter on Redis when there is one here; without, it counts on PostgreSQL (same figures).
    redis = redisServerBinary ? await startRedisServer() : undefined
    const metricsPorts: number[] = []
    while (metricsPorts.length < 2) {
      const port = await freePort()
      if (!metricsPorts.includes(port)) metricsPorts.push(port)
    }
    // Each kept as soon as it runs, so that after() stops it even if the other fails to start.
    await Promise.all(
      metricsPorts.map((metricsPort) =>
        spawnServer('serve', {
          DATABASE_URL: db.url,
          ...(redis ? { REDIS_URL: redis.url } : {}),
          METRICS_PORT: String(metricsPort),
          METRICS_HOST: '127.0.0.1',
          // Low enough that a few wrong passwords meet it: the limits' figures get something to show.
          LOGIN_EMAIL_LIMIT_PER_MINUTE: '3'
        }).then((server) => {
          replicas.push({ server, metricsPort })
        })
      )
    )

    // The shipped prometheus.yml, scraping every second, with the replicas' ports in place of Docker's DNS.
    const config = parse(await readFile(shipped('prometheus.yml'), 'utf8'))
    const job = config.scrape_configs.find((scrape: { job_name: string }) => scrape.job_name === 'tandem')
    assert.ok(job, 'prometheus.yml has a scrape job "tandem"')
    assert.deepEqual(
      job.dns_sd_configs?.map(({ names, type, port }: Record<string, unknown>) => ({ names, type, port })),
      [{ names: ['api'], type: 'A', port: 9464 }],
      'the tandem job discovers the Compose replicas by DNS'
    )
    assert.ok(job.relabel_configs?.length > 0, 'the tandem job relabels')
    delete job.dns_sd_configs
    job.static_configs = [{ targets: replicas.map(({ metricsPort }) => `127.0.0.1:${metricsPort}`) }]
    Object.assign(config.global, { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' })
    await writeFile(path.join(dir, 'prometheus.yml'), stringify(config))
    await copyFile(shipped('alerts.yml'), path.join(dir, 'alerts.yml'))
    await mkdir(path.join(dir, 'data'))

    const port = await freePort()
    const child = spawn(
      prometheusBinary,
      [
        `--config.file=${path.join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn'
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] }
    )
    let output = ''
    child.stdout!.on('data', (chunk) => {
      output += chunk
    })
    child.stderr!.on('data', (chunk) => {
      output += chunk
    })
    prometheus = { url: `http://127.0.0.1:${port}`, child, output: () => output }
    await until(
      async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}:\n${output}`)
        return fetch(`${prometheus.url}/-/ready`, { signal: AbortSignal.timeout(1000) }).then(
          (res) => res.ok,
          () => false
        )
      },
      'Prometheus to be ready',
      30_000
    )
    // Its first scrape waits for the discovery (up to 5 s): before it, what the traffic did would be
    // in the first sample of each series, and no rate would see it.
    await until(
      async () => {
        const targets = await tandemTargets(prometheus)
        return targets.length === 2 && targets.every((target) => target.health !== 'unknown')
      },
      'the first scrape of both replicas',
      30_000
    )

    // Traffic on every module, through both replicas.
    for (const [index, { server }] of replicas.entries()) {
      const answers = async (pending: Promise<Reply>, status: number) => {
        const res = await pending
        assert.equal(res.status, status, `${res.status} ${res.text}`)
        return res
      }
      await answers(
        request(server.url, 'POST', '/clientes/1/transacoes', { json: { valor: 100, tipo: 'c', descricao: 'obs' } }),
        200
      )
      await answers(
        request(server.url, 'POST', '/clientes/1/transacoes', { json: { valor: 50, tipo: 'd', descricao: 'obs' } }),
        200
      )
      await answers(
        request(server.url, 'POST', '/clientes/2/transacoes', {
          json: { valor: 100_000_000, tipo: 'd', descricao: 'too much' }
        }),
        422
      )
      await answers(
        request(server.url, 'POST', '/clientes/6/transacoes', { json: { valor: 1, tipo: 'c', descricao: 'nobody' } }),
        404
      )
      await answers(request(server.url, 'GET', '/clientes/1/extrato'), 200)
      for (let i = 0; i < 3; i++) await answers(request(server.url, 'GET', '/counter'), 200)

      const user = await signUp(server.url)
      await answers(request(server.url, 'GET', '/api/users/me', { headers: user.bearer }), 200)
      for (let i = 1; i <= 3; i++)
        await answers(
          request(server.url, 'POST', '/increment', { json: { key: `obs-${index}`, value: i }, headers: user.bearer }),
          200
        )
      await answers(request(server.url, 'POST', '/increment', { json: { key: 'obs', value: 1 } }), 401)

      const sheet = (
        await answers(
          request(server.url, 'POST', '/api/attendance/sheet/new', {
            json: { courseUnit: 0, summary: 'observability' },
            headers: user.bearer
          }),
          201
        )
      ).body.attendanceId as string
      await answers(
        request(server.url, 'POST', `/api/attendance/sheet/${sheet}/student/registration`, {
          json: { nmec: 98765, name: 'Maria Silva' }
        }),
        201
      )
      await answers(
        request(server.url, 'POST', `/api/attendance/sheet/${sheet}/student/registration`, {
          json: { nmec: 98765, name: 'Maria Silva' }
        }),
        409
      )
      await answers(
        request(server.url, 'POST', '/api/attendance/sheet/zzzzzz/student/registration', {
          json: { nmec: 12345, name: 'Nobody Here' }
        }),
        404
      )
      await answers(
        request(server.url, 'GET', `/api/attendance/sheet/${sheet}/students.csv`, { headers: user.bearer }),
        200
      )
      // A teacher's page watching the sheet: an event stream left open until the end.
      const stream = new AbortController()
      streams.push(stream)
      const events = await fetch(`${server.url}/api/attendance/sheet/${sheet}/events`, {
        headers: user.bearer,
        signal: stream.signal
      })
      assert.equal(events.status, 200)

      // Wrong passwords for this e-mail until its limit (3 a minute, the sign-up's login included) refuses them.
      const wrong: number[] = []
      for (let i = 0; i < 4; i++)
        wrong.push(
          (
            await request(server.url, 'POST', '/api/sessions', {
              json: { email: user.email, password: 'not the password' }
            })
          ).status
        )
      assert.ok(wrong.includes(401) && wrong.includes(429), `wrong logins answered ${wrong}`)
    }

    // Two scrapes of each replica and a rule evaluation after the traffic: what it did is in Prometheus.
    const trafficEnd = Date.now()
    await until(
      async () => {
        const { result } = await api<{ result: { values: [number, string][] }[] }>(
          prometheus,
          `/api/v1/query?query=${encodeURIComponent('up{job="tandem"}[1m]')}`
        )
        const { groups } = await api<{ groups: { lastEvaluation: string }[] }>(prometheus, '/api/v1/rules')
        return (
          result.length === 2 &&
          result.every(({ values }) => values.filter(([at]) => at * 1000 > trafficEnd).length >= 2) &&
          groups.length > 0 &&
          groups.every((group) => Date.parse(group.lastEvaluation) > trafficEnd)
        )
      },
      'two scrapes of both replicas after the traffic',
      30_000
    )
  })

  after(async () => {
    for (const stream of streams) stream.abort()
    if (prometheus) {
      const exited = prometheus.child.exitCode === null ? once(prometheus.child, 'exit') : Promise.resolve()
      prometheus.child.kill('SIGTERM')
      const stopped = await Promise.race([
        exited.then(() => true),
        sleep(10_000, undefined, { ref: false }).then(() => false)
      ])
      if (!stopped) prometheus.child.kill('SIGKILL')
    }
    await Promise.all(
      replicas.map(({ server }) =>
        Promise.race([server.stop(), sleep(15_000, undefined, { ref: false }).then(() => server.stop('SIGKILL'))])
      )
    )
    await redis?.remove()
    await db?.drop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  test('both replicas are targets of job "tandem", up, each its own instance (its address)', async () => {
    const targets = await tandemTargets(prometheus)
    assert.equal(targets.length, 2, JSON.stringify(targets))
    for (const target of targets) assert.equal(target.health, 'up', `${target.scrapeUrl}: ${target.lastError}`)
    const instances = targets.map((target) => target.labels.instance).sort()
    assert.deepEqual(instances, replicas.map(({ metricsPort }) => `127.0.0.1:${metricsPort}`).sort())
    const up = await query(prometheus, 'up{job="tandem"}')
    assert.deepEqual(
      up.result.map((sample) => sample.value[1]),
      ['1', '1']
    )
  })

  test('/metrics answers on the metrics port only: 404 on the public port', async () => {
    for (const { server, metricsPort } of replicas) {
      const metrics = await request(`http://127.0.0.1:${metricsPort}`, 'GET', '/metrics')
      assert.equal(metrics.status, 200)
      assert.match(metrics.text, /^http_request_duration_seconds_bucket\{/m)
      assert.equal((await request(server.url, 'GET', '/metrics')).status, 404)
    }
  })

  test("promtool check metrics finds nothing to say about a replica's /metrics", async () => {
    for (const { metricsPort } of replicas) {
      const metrics = await request(`http://127.0.0.1:${metricsPort}`, 'GET', '/metrics')
      assert.equal(metrics.status, 200)
      const result = promtool(['check', 'metrics'], metrics.text)
      assert.equal(result.status, 0, result.output)
      assert.equal(result.output, '')
    }
  })

  test('the traffic of each replica reached Prometheus, per route and per module', async () => {
    const perInstance = await query(
      prometheus,
      'sum by (instance) (http_request_duration_seconds_count{job="tandem", route="/clientes/:id/transacoes"})'
    )
    assert.deepEqual(
      perInstance.result.map((sample) => Number(sample.value[1])),
      [4, 4]
    )
    const figure = async (expr: string) => Number((await query(prometheus, expr)).result[0]?.value[1] ?? NaN)
    assert.equal(
      await figure('sum(tandem_crebitos_transactions_total{job="tandem", tipo="d", outcome="limit-exceeded"})'),
      2
    )
    assert.equal(await figure('sum(tandem_crebitos_transactions_total{job="tandem", outcome="accepted"})'), 4)
    assert.equal(await figure('sum(tandem_increments_committed_total{job="tandem"})'), 6)
    assert.equal(await figure('sum(tandem_attendance_sheets_created_total{job="tandem"})'), 2)
    assert.equal(await figure('sum(tandem_attendance_event_streams{job="tandem"})'), 2)
    assert.equal(await figure('sum(tandem_accounts_logins_total{job="tandem", outcome="ok"})'), 2)
    assert.ok((await figure('sum(tandem_accounts_logins_total{job="tandem", outcome="wrong"})')) >= 2)
    assert.ok((await figure('sum(tandem_rate_limit_refused_total{job="tandem", limit="login-email"})')) >= 2)
    assert.equal(await figure('min(tandem_database_up{job="tandem"})'), 1)
  })

  test('every dashboard expression evaluates, and at least 80 % of the panels show data', async (t) => {
    const { panels } = await dashboard()
    const failed: string[] = []
    const empty: string[] = []
    for (const panel of panels) {
      let shown = false
      for (const target of panel.targets ?? []) {
        try {
          const { result } = await query(prometheus, asQueried(target.expr!))
          if (result.length > 0) shown = true
        } catch (error) {
          failed.push(`panel ${panel.id} "${panel.title}" ${target.refId}: ${(error as Error).message}`)
        }
      }
      if (!shown) empty.push(`${panel.id} "${panel.title}"`)
    }
    t.diagnostic(
      `${panels.length - empty.length} of ${panels.length} panels show data${empty.length ? `; without: ${empty.join(', ')}` : ''}`
    )
    assert.deepEqual(failed, [], 'expressions Prometheus refused')
    assert.ok(
      empty.length <= panels.length * 0.2,
      `${empty.length} of ${panels.length} panels without data: ${empty.join(', ')}`
    )
  })

  test('every alert expression evaluates; Prometheus loaded every alert, healthy, and none fires', async () => {
    const rules = await alertRules()
    for (const rule of rules) await query(prometheus, rule.expr)
    const { groups } = await api<{
      groups: { rules: { name: string; health: string; lastError?: string; state: string }[] }[]
    }>(prometheus, '/api/v1/rules?type=alert')
    const loaded = groups.flatMap((group) => group.rules)
    assert.deepEqual(loaded.map((rule) => rule.name).sort(), rules.map((rule) => rule.alert!).sort())
    for (const rule of loaded) assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError}`)
    assert.deepEqual(
      loaded.filter((rule) => rule.state === 'firing').map((rule) => rule.name),
      [],
      'alerts firing on two healthy replicas'
    )
  })
})
