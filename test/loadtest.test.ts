import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createTcpServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { chromiumSkipReason, launchChromium } from './helpers/browser.js'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { launch, mainScript, projectRoot } from './helpers/processes.js'
import { startReplica, type AppReplica } from './helpers/servers.js'
import { until } from './helpers/wait.js'

/**
 * What Gatling 3 sends for rinha at `timeScale`, worked out here from its injection rules, apart
 * from the code under test: rampUsersPerSec(1).to(peak).during(120 s × scale) emits, for each
 * whole second s, the integer part of (peak − 1)/(2·D)·(2s + 1) + 1 plus the fraction carried over;
 * constantUsersPerSec(peak).during(D) emits round(D · peak); the validation phase sends 25 + 1 +
 * 25 + 1, then 15 per client (4 checks, a credit and its 5 statements, 5 invalid bodies) for 5
 * clients, and the 404 check.
 */
function gatlingCount(timeScale: number): number {
  const seconds = Math.trunc(120 * timeScale)
  let load = 0
  for (const peak of [220, 110, 10]) {
    let carried = 0
    for (let s = 0; s < seconds; s++) {
      const users = ((peak - 1) / (2 * seconds)) * (2 * s + 1) + 1 + carried
      const whole = Math.trunc(Number(users.toFixed(10)))
      carried = users - whole
      load += whole
    }
    load += Math.round(seconds * peak)
  }
  const validation = 25 + 1 + 25 + 1 + 5 * 15 + 1
  return validation + load
}

interface Run {
  code: number | null
  output: string
}

/** `node dist/main.js loadtest …` with nothing of the server's environment (no DATABASE_URL). */
async function loadtest(args: string[], timeoutMs = 45_000): Promise<Run> {
  const child = launch('loadtest', [process.execPath, mainScript, 'loadtest', ...args])
  const timer = setTimeout(() => child.child.kill('SIGKILL'), timeoutMs)
  const code = await child.exited
  clearTimeout(timer)
  return { code, output: child.output() }
}

/** script(1), from util-linux, runs a command on a pseudo-terminal; without it the terminal case is skipped, loudly. */
function scriptSkipReason(): string | undefined {
  if (spawnSync('script', ['--version']).status === 0) return undefined
  return 'script(1) (util-linux) is not installed: the progress line on a terminal is not checked'
}

/** Round robin per connection: each virtual user opens its own, so requests alternate replicas. */
async function roundRobin(ports: number[]): Promise<{ url: string; close(): Promise<void> }> {
  let next = 0
  const proxy = createTcpServer((socket) => {
    const upstream = connect(ports[next++ % ports.length], '127.0.0.1')
    socket.pipe(upstream).pipe(socket)
    socket.on('error', () => upstream.destroy())
    upstream.on('error', () => socket.destroy())
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  const { port } = proxy.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        proxy.close(() => resolve())
      })
  }
}

/**
 * The crebitos routes answered wrongly on purpose: `mode` below-limit accepts every debit and
 * reports a saldo under -limite; lying-statement keeps balances right but its statements say 0.
 */
async function brokenServer(mode: 'below-limit' | 'lying-statement'): Promise<{ url: string; server: Server }> {
  const limits = [0, 100000, 80000, 1000000, 10000000, 500000]
  const balances = [0, 0, 0, 0, 0, 0]
  const answer = (res: ServerResponse, status: number, body?: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(body === undefined ? '' : JSON.stringify(body))
  }
  const handle = (req: IncomingMessage, res: ServerResponse, text: string) => {
    const match = /^\/clientes\/(\d+)\/(transacoes|extrato)$/.exec(req.url ?? '')
    const id = Number(match?.[1])
    if (!match || !limits[id]) return answer(res, 404)
    if (match[2] === 'extrato') {
      const total = mode === 'lying-statement' ? 0 : balances[id]
      return answer(res, 200, {
        saldo: { total, limite: limits[id], data_extrato: new Date().toISOString() },
        ultimas_transacoes: []
      })
    }
    const body = JSON.parse(text || 'null') as { valor?: number; tipo?: string } | null
    if (!Number.isInteger(body?.valor) || (body?.tipo !== 'c' && body?.tipo !== 'd')) return answer(res, 422)
    balances[id] += body.tipo === 'c' ? body.valor! : -body.valor!
    const saldo = mode === 'below-limit' ? -limits[id] - 1 : balances[id]
    return answer(res, 200, { limite: limits[id], saldo })
  }
  const server = createHttpServer((req, res) => {
    let text = ''
    req.on('data', (chunk) => (text += chunk))
    req.on('end', () => {
      try {
        handle(req, res, text)
      } catch {
        answer(res, 422)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server }
}

describe('tandem loadtest', () => {
  let db: TestDatabase
  let replicas: AppReplica[]
  let balancer: { url: string; close(): Promise<void> }
  let dir: string

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tandem-loadtest-'))
    db = await createDatabase()
    replicas = await Promise.all([1, 2].map(() => startReplica({ DATABASE_URL: db.url })))
    balancer = await roundRobin(replicas.map((r) => r.port))
  })

  after(async () => {
    await balancer?.close()
    for (const replica of replicas ?? []) await replica.stop()
    await db?.sql.end()
    await db?.drop()
    await rm(dir, { recursive: true, force: true })
  })

  test('When the flags are wrong, Then it says why and exits 2; --help needs no server configuration', async () => {
    const help = await loadtest(['--help'])
    assert.equal(help.code, 0, help.output)
    assert.match(help.output, /--time-scale F/)
    assert.match(help.output, /rinha/)

    for (const args of [
      ['rinha', '--rate-scale', 'x'],
      ['rinha', '--bogus'],
      ['nope'],
      ['rinha', '--target', 'ftp://x']
    ]) {
      const bad = await loadtest(args)
      assert.equal(bad.code, 2, `${args.join(' ')}: ${bad.output}`)
      assert.match(bad.output, /tandem loadtest: /)
    }
  })

  test('When rinha runs against two replicas at time scale 0.05, Then every check holds and it sends what Gatling would', async () => {
    const json = path.join(dir, 'run.json')
    const html = path.join(dir, 'run.html')

    const run = await loadtest([
      'rinha',
      '--target',
      balancer.url,
      '--time-scale',
      '0.05',
      '--seed',
      '7',
      '--json',
      json,
      '--html',
      html
    ])

    assert.equal(run.code, 0, run.output)
    assert.match(run.output, /PASSED/)
    const figures = JSON.parse(await readFile(json, 'utf8'))
    assert.equal(figures.requests.total, gatlingCount(0.05))
    assert.equal(figures.requests.ko, 0)
    assert.equal(figures.consistency.failures, 0)
    assert.equal(figures.finalChecks, true)
    assert.deepEqual(Object.keys(figures.groups).sort(), ['créditos', 'débitos', 'extratos', 'validações'])
    for (const group of Object.values(figures.groups) as Array<{ latencyMs: { p50: number; p99: number } }>) {
      assert.ok(group.latencyMs.p99 >= group.latencyMs.p50 && group.latencyMs.p50 > 0)
    }
    assert.ok(figures.series.length >= 12, 'a point per second')
    assert.ok(figures.series.some((s: { perS: number }) => s.perS > 0))
    assert.ok(figures.histogram.length > 0)
    assert.equal(typeof figures.generatorLagMs.p99, 'number')
    // Both replicas served the load.
    const served = await db.sql<{ n: number }[]>`select count(*)::int as n from transacoes`
    assert.ok(served[0].n > 1000)
  })

  test('When --find-max runs, Then it warms up unjudged, climbs the steps while they hold, and reports the highest rate held', async () => {
    const json = path.join(dir, 'find-max.json')

    const run = await loadtest(
      [
        'rinha',
        '--target',
        balancer.url,
        '--find-max',
        '--time-scale',
        '0.1',
        '--rate-scale',
        '0.1',
        '--sla-ms',
        '2000',
        '--seed',
        '11',
        '--json',
        json
      ],
      120_000
    )

    assert.equal(run.code, 0, run.output)
    assert.match(run.output, /warm-up, ×0\.1 → ×1 over 3 s \(not judged\)/)
    const figures = JSON.parse(await readFile(json, 'utf8'))
    const { warmUp, steps, maxHeldPerS } = figures.findMax as {
      warmUp: { durationS: number; requests: number }
      steps: Array<{ multiplier: number; ratePerS: number; requests: number; held: boolean; verdict: string }>
      maxHeldPerS: number
    }
    assert.equal(warmUp.durationS, 3)
    assert.ok(warmUp.requests > 0, 'the warm-up sent requests')
    assert.deepEqual(
      steps.map((step) => step.multiplier),
      [1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32].slice(0, steps.length)
    )
    assert.equal(steps[0].ratePerS, 34, '×1 is the scenario final rate (220 + 110 + 10 req/s) × --rate-scale')
    assert.ok(
      steps.slice(0, -1).every((step) => step.held),
      'it climbs only while the steps hold'
    )
    const last = steps.at(-1)!
    assert.ok(last.held ? steps.length === 11 : last.verdict !== 'held', 'it stops at the first step that did not hold')
    assert.equal(maxHeldPerS, steps.filter((step) => step.held).at(-1)?.ratePerS)
    assert.match(run.output, new RegExp(`highest rate held: ${maxHeldPerS} req/s`))
    assert.equal(
      figures.requests.total,
      warmUp.requests + steps.reduce((sum, step) => sum + step.requests, 0),
      'the report counts the warm-up and every step'
    )
    assert.equal(figures.consistency.failures, 0)
  })

  test('When the report is opened in Chromium with the network blocked, Then the four charts draw', async (t) => {
    const skip = chromiumSkipReason()
    if (skip) return t.skip(skip)
    const html = path.join(dir, 'run.html')
    const page = await readFile(html, 'utf8').catch(() => undefined)
    if (!page) return t.skip('the run before wrote no report')
    const browser = await launchChromium()
    try {
      const context = await browser.newContext()
      const attempted: string[] = []
      await context.route('**/*', (route) => {
        attempted.push(route.request().url())
        return route.abort()
      })
      const tab = await context.newPage()
      const errors: string[] = []
      tab.on('pageerror', (error) => errors.push(error.message))

      await tab.setContent(page, { waitUntil: 'load' })
      await tab.waitForFunction('document.body.dataset.drawn === "true"', undefined, { timeout: 10_000 })

      // In the page (a string: this file is typed for Node, not the DOM): the inked pixels of each canvas.
      const drawn = (await tab.evaluate(`(() => {
        const painted = [...document.querySelectorAll('canvas')].map((canvas) => {
          const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height)
          let inked = 0
          for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked++
          return inked
        })
        return { charts: (window.loadtestCharts ?? []).length, painted, rows: document.querySelectorAll('#groups tr').length }
      })()`)) as { charts: number; painted: number[]; rows: number }
      assert.deepEqual(errors, [])
      assert.deepEqual(attempted, [], 'the page asked the network for nothing')
      assert.equal(drawn.charts, 4)
      assert.equal(drawn.painted.length, 4)
      for (const inked of drawn.painted) assert.ok(inked > 100, `a canvas is blank: ${drawn.painted.join(', ')}`)
      assert.equal(drawn.rows, 1 + 4 + 1, 'a header, a row per group and the total')
    } finally {
      await browser.close()
    }
  })

  test(
    'On a terminal, Then the progress line is rewritten in place and Ctrl-C stops the load and still reports',
    {
      skip: scriptSkipReason()
    },
    async () => {
      // A fresh ledger: the validation phase expects the balances the Rinha starts from.
      await db.sql`delete from transacoes`
      await db.sql`update clientes set saldo = 0`
      // script(1) runs the command on a pseudo-terminal: stderr is a TTY, and a ^C typed into it is the
      // terminal's SIGINT to the load test, as a user's Ctrl-C is.
      const command = [
        process.execPath,
        mainScript,
        'loadtest',
        'rinha',
        '--target',
        balancer.url,
        '--time-scale',
        '0.2'
      ]
      const child = spawn('script', ['-qfec', command.join(' '), '/dev/null'], {
        cwd: projectRoot,
        stdio: ['pipe', 'pipe', 'pipe']
      })
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
      const exited = once(child, 'exit')
      // Each update starts at the line's beginning and erases it (CR, then ESC [2K), never after a newline.
      const progressLine = /^\d+\.\d\/\d+\.\d s {2}\d+ req\/s {2}p99 [\d.]+ ms {2}errors \d+ {2}in flight \d+/
      const rewrites = () => output.split('\r\x1b[2K').filter((part) => progressLine.test(part))
      try {
        await until(() => rewrites().length >= 3, 'three progress rewrites of the load phase', 30_000)
        child.stdin.write('\x03')
        const [code] = await Promise.race([exited, sleep(15_000).then(() => ['still running after Ctrl-C'])])
        assert.equal(code, 130, output)
      } finally {
        child.kill('SIGKILL')
      }
      assert.ok(!/\n\d+\.\d\/\d+\.\d s {2}\d+ req\/s/.test(output), `a plain progress line on a terminal:\n${output}`)
      assert.match(output, /interrupted: no new requests/)
      assert.match(output, /débitos +\d+ +\d+/, 'the summary table after Ctrl-C')
    }
  )

  for (const mode of ['below-limit', 'lying-statement'] as const) {
    test(`When the server breaks the contract (${mode}), Then the load test fails with exit 1`, async () => {
      const { url, server } = await brokenServer(mode)
      const json = path.join(dir, `${mode}.json`)
      try {
        const run = await loadtest(['rinha', '--target', url, '--time-scale', '0.02', '--seed', '3', '--json', json])

        assert.equal(run.code, 1, run.output)
        assert.match(run.output, /FAILED/)
        const figures = JSON.parse(await readFile(json, 'utf8'))
        assert.equal(figures.passed, false)
        if (mode === 'below-limit') assert.ok(figures.requests.koReasons['débitos: saldo < -limite'] > 0)
        else assert.ok(figures.consistency.byName['final-balance'] > 0, JSON.stringify(figures.consistency))
      } finally {
        server.closeAllConnections()
        await new Promise((resolve) => server.close(resolve))
      }
    })
  }
})
