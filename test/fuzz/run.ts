/**
 * `npm run test:fuzz` (issue 9): thousands of seeded hostile requests over every route, against two
 * `serve` replicas on one fresh database, alternating between them. It passes when no answer is a 5xx,
 * every API error has the JSON error shape, both replicas still answer, HEAD never counts, and the
 * database holds exactly what the valid setup wrote.
 *
 *   FUZZ_SEED=n               the seed (default below; printed at start)
 *   FUZZ_CASES=n              how many generated cases (default 20000)
 *   FUZZ_ONLY=i,j             run only these case indices (after the same setup), printing each answer
 *   FUZZ_CONCURRENCY=n        requests in flight (default 12)
 *   FUZZ_REQUEST_TIMEOUT_MS   per request (default 5000)
 *   FUZZ_DEADLINE_MS          the whole run, after the build (default 90000)
 *   FUZZ_VERBOSE=1            also print the statuses each route's cases got
 *
 * The last line is `fuzz: N passed, M failed` (cases, and the global checks after them).
 */
import { Agent } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startEmbeddedPostgres, type EmbeddedServer } from '../../src/db/embedded.js'
import { createLogger } from '../../src/platform/logger.js'
import { createDatabase, type TestDatabase } from '../helpers/database.js'
import { killGroup, logLines, spawnServer, type ServerProcess } from '../helpers/servers.js'
import type { Case, Context, HttpCase } from './cases.js'
import { judgeHttp, judgeRaw, snippet, type Problem } from './checks.js'
import { caseRandom } from './random.js'
import { exchange } from './raw.js'
import { describeRequest, Tally } from './report.js'
import { buildCase } from './routes.js'
import { setUp } from './setup.js'
import { compare, counterValue, rowCount, snapshot } from './state.js'
import { send, type Outcome } from './transport.js'

const defaultSeed = 20_240_109

function intFromEnv(name: string, fallback: number): number {
  const text = process.env[name]
  if (text === undefined || text === '') return fallback
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 0)
    throw new Error(`${name} must be a non-negative integer, not ${JSON.stringify(text)}`)
  return value
}

const seed = intFromEnv('FUZZ_SEED', defaultSeed)
const caseCount = intFromEnv('FUZZ_CASES', 20_000)
const concurrency = Math.max(1, intFromEnv('FUZZ_CONCURRENCY', 12))
const requestTimeoutMs = intFromEnv('FUZZ_REQUEST_TIMEOUT_MS', 5000)
const deadlineMs = intFromEnv('FUZZ_DEADLINE_MS', 90_000)
const only = (process.env.FUZZ_ONLY ?? '')
  .split(',')
  .filter(Boolean)
  .map((text) => {
    const index = Number(text)
    if (!Number.isSafeInteger(index) || index < 0)
      throw new Error(`FUZZ_ONLY holds ${JSON.stringify(text)}, not a case index`)
    return index
  })

/**
 * The replicas' limits raised where a limit is not what a case tests (testLimits, applied by
 * spawnServer, covers registrations and per-address logins), so that the run is about input handling.
 * HEADERS_TIMEOUT_MS at its minimum lets the slow-client cases see the cut-off within a short bound;
 * load shedding stays on with its deployed defaults.
 */
const sessionIdleMs = 3_600_000
const serverLimits: Record<string, string> = {
  SESSION_IDLE_MS: String(sessionIdleMs),
  LOGIN_LIMIT_PER_MINUTE: '100000',
  PASSWORD_CHANGE_LIMIT_PER_MINUTE: '10000',
  PASSWORD_CHANGE_MAX_FAILURES: '1000',
  ATTENDANCE_SIGNIN_LIMIT_PER_MINUTE: '1000000',
  CSV_EXPORTS_PER_USER: '1000',
  CSV_EXPORTS_PER_PROCESS: '10000',
  EVENT_STREAMS_PER_USER: '10000',
  EVENT_STREAMS_PER_PROCESS: '100000',
  HEADERS_TIMEOUT_MS: '1000',
  // Load shedding as deployed (testLimits turns it off for the other suites): hostile input must not
  // trip it, and a 503 here fails the run.
  OVERLOAD_EVENT_LOOP_DELAY_MS: '200',
  OVERLOAD_MAX_IN_FLIGHT: '2048',
  OVERLOAD_DATABASE_WAIT_MS: '1000'
}

const log = (line: string) => process.stdout.write(`${line}\n`)
const started = Date.now()
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`

let servers: ServerProcess[] = []
let tally: Tally | undefined
/** Stops what the run started (replicas, database, embedded PostgreSQL); set once there is something to stop. */
let cleanUp: () => Promise<void> = async () => {}

// Whatever hangs, the run ends: replicas killed, the database dropped if it can be, the verdict printed, exit 1.
setTimeout(() => {
  log(`fuzz: hard deadline of ${deadlineMs} ms passed (FUZZ_DEADLINE_MS); stopping`)
  for (const server of servers) killGroup(server.child)
  void Promise.race([cleanUp(), sleep(5000)]).finally(() => {
    tally?.print(log)
    log(`fuzz: ${tally?.passed ?? 0} passed, ${(tally?.failed ?? 0) + 1} failed`)
    process.exit(1)
  })
}, deadlineMs).unref()

// The replicas run in process groups of their own (spawnServer): a Ctrl-C or a cancelled CI job would
// leave them running, so the run stops them itself.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`fuzz: ${signal}; stopping`)
    for (const server of servers) killGroup(server.child)
    void Promise.race([cleanUp(), sleep(5000)]).finally(() => process.exit(130))
  })
}

async function provideAdminUrl(): Promise<{ stop(): Promise<void> }> {
  if (process.env.DATABASE_URL) {
    process.env.TANDEM_TEST_ADMIN_URL = process.env.DATABASE_URL
    return { stop: async () => {} }
  }
  log('fuzz: DATABASE_URL is not set; starting an embedded PostgreSQL for this run')
  const dataDir = await mkdtemp(path.join(tmpdir(), 'tandem-fuzz-pg-'))
  const embedded: EmbeddedServer = await startEmbeddedPostgres(
    dataDir,
    createLogger({ production: true, logLevel: 'warn' })
  )
  process.env.TANDEM_TEST_ADMIN_URL = embedded.url
  return {
    async stop() {
      await embedded.stop()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
}

interface Run {
  ctx: Context
  agents: Agent[]
  /** GET /counter answered with a 2xx: each such answer took one number of the cluster counter. */
  counterAnswers: number
  /** Cases refused by load shedding and sent again (see `shedOnce`). */
  shedRetries: number
}

/**
 * A case refused by load shedding (503 "overloaded", from the onRequest hook: nothing was read or
 * written) is sent once more after its Retry-After, and judged on that second answer. One replica
 * stalled for a sampling window by the machine (CI shares two cores between both replicas,
 * PostgreSQL and this driver) sheds every request of that window whatever they hold; input that
 * trips the bound by itself trips it again, and more than `maxShedRetries` retries fail the run.
 */
const maxShedRetries = 200
const maxRetryWaitMs = 2000

function shedWaitMs(status: number, headers: Record<string, string | string[] | undefined>, body: Buffer) {
  if (status !== 503 || !body.includes('"overloaded"')) return undefined
  const seconds = Number(headers['retry-after'])
  return Math.min(maxRetryWaitMs, Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 1000)
}

/** The wait before a retry when any answer of the outcome was shed; undefined when none was. */
function shedOnce(
  answers: Array<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }>
) {
  for (const { status, headers, body } of answers) {
    const wait = shedWaitMs(status, headers, body)
    if (wait !== undefined) return wait
  }
  return undefined
}

const isCounterRead = (c: HttpCase) => c.method === 'GET' && c.path.split('?')[0] === '/counter'

async function runCase(run: Run, c: Case, index: number | undefined, serverIndex: number): Promise<void> {
  const server = servers[serverIndex]
  let problems: Problem[]
  let answer: string
  let status: string
  if (c.kind === 'raw') {
    let result = await exchange(server.port, c)
    const wait = shedOnce(result.responses)
    if (wait !== undefined) {
      run.shedRetries++
      await sleep(wait)
      result = await exchange(server.port, c)
    }
    problems = judgeRaw(c, result)
    answer =
      result.responses.map((response) => `${response.status} ${snippet(response.body, 120)}`).join(' / ') ||
      (result.closedByServer ? `closed after ${result.ms} ms` : `open after ${result.ms} ms`)
    status = result.responses.map((response) => response.status).join('+') || 'none'
  } else {
    let outcome: Outcome = await send(run.agents[serverIndex], server.port, c, requestTimeoutMs)
    const wait = 'answer' in outcome ? shedOnce([outcome.answer]) : undefined
    if (wait !== undefined) {
      run.shedRetries++
      await sleep(wait)
      outcome = await send(run.agents[serverIndex], server.port, c, requestTimeoutMs)
    }
    if ('answer' in outcome && isCounterRead(c) && outcome.answer.status < 300) run.counterAnswers++
    problems = judgeHttp(c, outcome, run.ctx)
    answer =
      'answer' in outcome
        ? `${outcome.answer.status} ${outcome.answer.headers['content-type'] ?? '(no content-type)'} ${snippet(outcome.answer.body, 160)}`
        : outcome.error
    status = 'answer' in outcome ? String(outcome.answer.status) : 'none'
  }
  const route = c.kind === 'raw' ? `${c.route} (raw)` : c.route
  tally!.record(c.family, route, index, problems, { what: c.what, request: describeRequest(c), answer, status })
  if (only.length > 0 && index !== undefined) {
    const verdict =
      problems.length === 0 ? 'passed' : problems.map((problem) => `${problem.check}: ${problem.note}`).join('\n  ')
    log(`case ${index}: ${c.what}\n  request: ${describeRequest(c)}\n  answer:  ${answer}\n  ${verdict}`)
  }
}

/** HEAD answers a GET's headers without its effect: a batch of them must leave the counter where it was. */
async function headNeverCounts(run: Run, db: TestDatabase) {
  const before = await counterValue(db.sql)
  const head: HttpCase = {
    kind: 'http',
    family: 'counter',
    route: 'HEAD /counter',
    what: 'HEAD /counter (batch)',
    method: 'HEAD',
    path: '/counter',
    headers: {},
    expect: 'any'
  }
  for (let i = 0; i < 40; i++) await runCase(run, head, undefined, i % 2)
  const after = await counterValue(db.sql)
  const problems =
    after === before
      ? []
      : [
          {
            check: 'HEAD advanced the counter',
            note: `40 HEAD /counter moved the cluster counter from ${before} to ${after}`
          }
        ]
  tally!.record('counter', 'HEAD /counter', undefined, problems, {
    what: '40 HEAD /counter, nothing else running',
    request: 'HEAD /counter ×40 over both replicas',
    answer: `counter ${before} → ${after}`
  })
}

async function hostilePhase(run: Run, softDeadline: number): Promise<number> {
  const indices = only.length > 0 ? only : Array.from({ length: caseCount }, (_, i) => i)
  let next = 0
  let ran = 0
  const progressEvery = Math.max(1000, Math.ceil(indices.length / 6))
  const lane = async () => {
    while (next < indices.length && Date.now() < softDeadline) {
      const index = indices[next++]
      const c = buildCase(caseRandom(seed, index), run.ctx, index)
      await runCase(run, c, index, index % 2)
      if (++ran % progressEvery === 0) log(`fuzz: ${ran} cases in ${elapsed()} (${tally!.failed} failing so far)`)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane))
  return indices.length - ran
}

async function stateUnchanged(db: TestDatabase, before: Awaited<ReturnType<typeof snapshot>>) {
  const after = await snapshot(db.sql, { sessionIdleMs })
  const changes = compare(before, after)
  for (const change of changes) {
    const rows = [
      ...change.added.slice(0, 3).map((row) => `+ ${row}`),
      ...change.removed.slice(0, 3).map((row) => `- ${row}`)
    ]
    tally!.record(
      'state',
      `table ${change.table}`,
      undefined,
      [
        {
          check: 'hostile requests changed the database',
          note: `${change.added.length} rows added, ${change.removed.length} removed: ${rows.map((row) => snippet(row, 220)).join('; ')}`
        }
      ],
      { what: 'snapshot after setup vs after the hostile phase', request: '-', answer: '-' }
    )
  }
  if (changes.length === 0) tally!.record('state', 'every table', undefined, [], { what: '', request: '', answer: '' })
  log(
    `fuzz: state ${changes.length === 0 ? 'unchanged' : `changed in ${changes.map((change) => change.table).join(', ')}`} (${rowCount(after)} rows compared)`
  )
}

async function counterAccounted(run: Run, db: TestDatabase, start: number) {
  const end = await counterValue(db.sql)
  const problems =
    end - start === run.counterAnswers
      ? []
      : [
          {
            check: 'the counter moved by other than the GET /counter answered',
            note: `moved by ${end - start}, ${run.counterAnswers} GET /counter were answered 2xx (a HEAD or refused request counted?)`
          }
        ]
  tally!.record('counter', 'cluster counter', undefined, problems, {
    what: 'counter before vs after the hostile phase',
    request: '-',
    answer: `${start} → ${end}`
  })
}

/** For the reader of a 503 from load shedding: how many requests each replica shed, and why. */
async function printShedding() {
  for (const [i, server] of servers.entries()) {
    try {
      const text = await (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(3000) })).text()
      const figures = text.split('\n').filter((line) => /^tandem_overload_refused_total/.test(line))
      if (figures.length > 0) log(`fuzz: replica ${i === 0 ? 'A' : 'B'} shed load: ${figures.join(', ')}`)
    } catch (error) {
      log(`fuzz: replica ${i === 0 ? 'A' : 'B'}: /metrics unreadable (${(error as Error).message})`)
    }
  }
}

async function bothAlive() {
  for (const [i, server] of servers.entries()) {
    let problem: Problem | undefined
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      problem = {
        check: 'replica died',
        note: `exit ${server.child.exitCode ?? server.child.signalCode}; last output: ${snippet(server.output().slice(-1500), 1500)}`
      }
    } else {
      try {
        const res = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(3000) })
        if (res.status !== 200) problem = { check: 'replica unhealthy', note: `/health answered ${res.status}` }
      } catch (error) {
        problem = { check: 'replica unhealthy', note: `/health: ${(error as Error).message}` }
      }
    }
    tally!.record('liveness', `replica ${i === 0 ? 'A' : 'B'}`, undefined, problem ? [problem] : [], {
      what: 'alive and answering /health',
      request: 'GET /health',
      answer: problem?.note ?? '200'
    })
  }
}

/**
 * The replicas' own account: every 5xx is logged at error level with its cause, also those no client
 * saw (the client had hung up). Each distinct cause is one failure; its stack's first frames say where.
 */
function serverErrors() {
  for (const [i, server] of servers.entries()) {
    const causes = new Map<string, { count: number; stack: string }>()
    for (const line of logLines(server.output())) {
      if (typeof line.level !== 'number' || line.level < 50) continue
      const err = line.err as { type?: string; message?: string; stack?: string } | undefined
      const cause = `${String(line.msg)}${err ? `: ${err.type ?? 'Error'}: ${err.message ?? ''}` : ''}`.slice(0, 200)
      const seen = causes.get(cause) ?? {
        count: 0,
        stack: (err?.stack ?? '')
          .split('\n')
          .slice(1, 4)
          .map((frame) => frame.trim())
          .join(' < ')
      }
      seen.count++
      causes.set(cause, seen)
    }
    const replica = `replica ${i === 0 ? 'A' : 'B'}`
    for (const [cause, { count, stack }] of causes) {
      tally!.record(
        'server-log',
        `${replica} log`,
        undefined,
        [{ check: `logged error "${cause}"`, note: `${count} times${stack ? `; ${stack}` : ''}` }],
        { what: 'errors in the replica log', request: '-', answer: '-' }
      )
    }
    if (causes.size === 0)
      tally!.record('server-log', `${replica} log`, undefined, [], { what: '', request: '', answer: '' })
  }
}

async function main() {
  log(
    `fuzz: seed ${seed} (FUZZ_SEED), ${only.length > 0 ? `cases ${only.join(', ')} (FUZZ_ONLY)` : `${caseCount} cases (FUZZ_CASES)`}, ${concurrency} in flight, deadline ${deadlineMs} ms`
  )
  tally = new Tally(seed)
  const database = await provideAdminUrl()
  cleanUp = () => database.stop()
  const db = await createDatabase({ migrated: true })
  cleanUp = async () => {
    await Promise.all(
      servers.map((server) => Promise.race([server.stop(), sleep(5000).then(() => killGroup(server.child))]))
    )
    await db.drop().catch((error: Error) => log(`fuzz: could not drop the database: ${error.message}`))
    await database.stop()
  }
  try {
    const env = { DATABASE_URL: db.url, ...serverLimits }
    servers = await Promise.all([spawnServer('serve', env), spawnServer('serve', env)])
    log(`fuzz: replicas A ${servers[0].url} and B ${servers[1].url} on one database (${elapsed()})`)
    const ctx = await setUp([servers[0].url, servers[1].url], db.sql)
    const run: Run = {
      ctx,
      agents: servers.map(() => new Agent({ keepAlive: true, maxSockets: concurrency })),
      counterAnswers: 0,
      shedRetries: 0
    }
    const before = await snapshot(db.sql, { sessionIdleMs })
    log(`fuzz: setup done, ${rowCount(before)} rows (${elapsed()})`)

    await headNeverCounts(run, db)
    const counterStart = await counterValue(db.sql)
    // Room after the last case for the state checks and the clean-up.
    const notRun = await hostilePhase(run, started + deadlineMs - Math.min(15_000, deadlineMs / 4))
    if (notRun > 0) {
      tally.record(
        'deadline',
        'hostile phase',
        undefined,
        [{ check: 'cases not run before the deadline', note: `${notRun} cases left (FUZZ_DEADLINE_MS=${deadlineMs})` }],
        { what: '', request: '-', answer: '-' }
      )
    }
    log(`fuzz: hostile phase done (${elapsed()}); ${run.shedRetries} cases shed once and sent again`)
    if (run.shedRetries > maxShedRetries) {
      tally.record(
        'overload',
        'load shedding',
        undefined,
        [
          {
            check: 'hostile input tripped load shedding',
            note: `${run.shedRetries} cases were refused as overloaded (at most ${maxShedRetries} may be, once each)`
          }
        ],
        { what: '', request: '-', answer: '-' }
      )
    }
    for (const agent of run.agents) agent.destroy()
    await stateUnchanged(db, before)
    await counterAccounted(run, db, counterStart)
    await bothAlive()
    await printShedding()
    serverErrors()
  } finally {
    await cleanUp()
  }
  if (process.env.FUZZ_VERBOSE) tally.printOutcomes(log)
  tally.print(log)
  log(`fuzz: finished in ${elapsed()}`)
  log(`fuzz: ${tally.passed} passed, ${tally.failed} failed`)
  process.exit(tally.failed > 0 ? 1 : 0)
}

main().catch((error: unknown) => {
  // main's own clean-up has run (or the failure came before there was any).
  log(`fuzz: the run itself failed: ${(error as Error).stack ?? String(error)}`)
  for (const server of servers) killGroup(server.child)
  log(`fuzz: ${tally?.passed ?? 0} passed, ${(tally?.failed ?? 0) + 1} failed`)
  process.exit(1)
})
