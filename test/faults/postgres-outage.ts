/**
 * Scenario 2: PostgreSQL stopped for 5 s under load and started again, then restarted at once
 * (every pooled connection dropped). Every request is answered within the statement deadline plus
 * a margin (a 503 with Retry-After while the database is away), the replicas recover by themselves
 * without a restart, and every acknowledged write is in the database afterwards.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { until } from '../helpers/wait.js'
import { loggedCause, ownPostgres, replicaProblems, startReplica, type Replica } from './processes.js'
import { emptyResult, tally, type ScenarioResult } from './report.js'
import { prepare } from './setup.js'
import { judgeAnswers, verify } from './verify.js'
import { during, Load, slowest, statusCounts, type AttemptRecord } from './workload.js'

// The replicas' DATABASE_STATEMENT_TIMEOUT_MS (its default): no request should wait on the database
// longer, and the bound adds 3 s for connecting, queueing and answering.
const statementTimeoutMs = 5000
const boundMs = statementTimeoutMs + 3000
const outageMs = 5000
const settleMs = statementTimeoutMs + 1500

interface Phase {
  what: string
  /** When the fault began, when the database was back, when the next phase (or the end) came. */
  from: number
  back: number
  end: number
  /** Per replica: ms after `back` to its first 2xx on a database route sent after `back`. */
  first: number[]
}

/** Every replica's first 2xx on a database route sent after `since`: ms after `since`, per replica. */
async function firstAnswers(load: Load, replicas: Replica[], since: number): Promise<number[]> {
  const firstOk = (replica: Replica) =>
    load.attempts.find(
      ({ target, outcome }) =>
        target === replica.name && outcome.startedAt >= since && outcome.ok && outcome.status < 300
    )
  await until(
    () => replicas.every((replica) => firstOk(replica)),
    'every replica to answer a database route with a 2xx again',
    30_000
  )
  return replicas.map((replica) => {
    const { outcome } = firstOk(replica)!
    return outcome.startedAt + outcome.ms - since
  })
}

const refused = ({ outcome }: AttemptRecord) => !outcome.ok || outcome.status >= 500

export async function postgresOutage(log: (line: string) => void): Promise<ScenarioResult> {
  const result = emptyResult('postgres-outage')
  const pg = await ownPostgres()
  const env = {
    DATABASE_URL: pg.url,
    DATABASE_STATEMENT_TIMEOUT_MS: String(statementTimeoutMs),
    ATTENDANCE_SIGNIN_LIMIT_PER_MINUTE: '1000000'
  }
  const replicas = [await startReplica('A', env), await startReplica('B', env)]
  const fixtures = await prepare(replicas.map((replica) => replica.url))
  const load = new Load({
    tag: 'p',
    targets: () => replicas.map((replica) => replica.target),
    mix: { credit: 4, debit: 1, increment: 3, signIn: 2, counter: 2, extrato: 1 },
    ...fixtures,
    incrementKeys: ['faults-pg-a', 'faults-pg-b'],
    // Past the bound, so a slow answer is measured and judged rather than cut off.
    timeoutMs: boundMs + 4000,
    lanes: 12
  })
  const phases: Phase[] = []
  load.start()
  try {
    await sleep(1500)

    // A stop of 5 s: the replicas find no database at all, then it comes back on the same port.
    let from = Date.now()
    await pg.stop()
    await sleep(outageMs)
    await pg.start()
    let back = Date.now()
    phases.push({
      what: `stopped for ${outageMs} ms`,
      from,
      back,
      end: 0,
      first: await firstAnswers(load, replicas, back)
    })
    // Longer than the statement deadline: every request still waiting on the pool meanwhile is answered.
    await sleep(settleMs)
    result.faults++

    // A restart: every connection in every pool is dead at once, the database is back at once.
    from = Date.now()
    phases[0].end = from
    await pg.stop()
    await pg.start()
    back = Date.now()
    phases.push({ what: 'restarted', from, back, end: 0, first: await firstAnswers(load, replicas, back) })
    await sleep(settleMs)
    result.faults++
  } finally {
    await load.stop()
  }
  if (phases.length > 0) phases[phases.length - 1].end = Date.now()

  // Each fault lasts from its start to the end of the last refusal it caused.
  const windows: Array<{ from: number; to: number }> = []
  for (const phase of phases) {
    const ofPhase = load.attempts.filter(
      ({ outcome }) => outcome.startedAt >= phase.from && outcome.startedAt < phase.end
    )
    const refusals = ofPhase.filter(refused)
    const to = Math.max(phase.back, ...refusals.map(({ outcome }) => outcome.startedAt + outcome.ms))
    windows.push({ from: phase.from, to })
    const met = during(load.attempts, phase.from, to)
    const slowRefusals = refusals.filter(({ outcome }) => outcome.ms > 1000).length
    log(
      `  ${phase.what} (down ${phase.back - phase.from} ms): first 2xx ${phase.first.map((ms, i) => `on ${replicas[i].name} ${ms} ms`).join(', ')} after it was back, last refusal ended ${to - phase.back} ms after it was back; ` +
        `${met.length} requests met it, ${statusCounts(met)}; ${slowRefusals} of the 503s took over 1 s; slowest answer ${slowest(met)} ms`
    )
    result.slowestMs = Math.max(result.slowestMs, slowest(met))
    // A request sent once the database has been back for a whole statement deadline has no reason
    // to be refused: every pooled connection has had that long to connect again. One still in flight
    // when the next fault began met that fault instead.
    const late = refusals.filter(
      ({ outcome }) =>
        outcome.startedAt >= phase.back + statementTimeoutMs && outcome.startedAt + outcome.ms < phase.end
    )
    if (late.length > 0) {
      const latest = Math.max(...late.map(({ outcome }) => outcome.startedAt)) - phase.back
      result.problems.push(
        `${phase.what}: requests sent ${statementTimeoutMs}–${latest} ms after the database was back were still refused: ${statusCounts(late)}; ` +
          late
            .slice(0, 3)
            .map(
              ({ op, target, outcome }) =>
                `${op} on ${target} at +${outcome.startedAt - phase.back} ms: ${
                  outcome.ok
                    ? `${outcome.status} ${outcome.text.slice(0, 120)} (logged: ${loggedCause(
                        replicas.find((replica) => replica.name === target)!,
                        outcome.headers['x-request-id']
                      )})`
                    : outcome.error
                }`
            )
            .join('; ')
      )
    }
    if (process.env.FAULTS_VERBOSE) {
      for (const attempt of met.filter(({ outcome }) => outcome.ms > 1000).slice(0, 30)) {
        log(
          `    slow: ${attempt.op} on ${attempt.target} at +${attempt.outcome.startedAt - phase.from} ms: ${attempt.outcome.ok ? attempt.outcome.status : attempt.outcome.error} after ${attempt.outcome.ms} ms ${attempt.outcome.ok ? attempt.outcome.text.slice(0, 100) : ''}`
        )
      }
    }
  }
  const met = (attempt: AttemptRecord) => windows.some((window) => during([attempt], window.from, window.to).length > 0)
  result.problems.push(
    ...judgeAnswers(load.attempts.filter(met), { boundMs, allowed: [200, 201, 422], what: 'during the faults' })
  )
  // Outside the faults the service is whole: nothing but its ordinary answers.
  result.problems.push(
    ...judgeAnswers(
      load.attempts.filter((attempt) => !met(attempt)),
      { boundMs, allowed: [200, 201, 422], what: 'outside the faults' }
    )
  )
  const outside = load.attempts.filter((attempt) => !met(attempt) && refused(attempt))
  if (outside.length > 0)
    result.problems.push(`outside the faults: ${outside.length} refusals (${statusCounts(outside)})`)

  for (const replica of replicas) {
    result.problems.push(...replicaProblems(replica, log))
    const ready = await fetch(`${replica.url}/ready`, { signal: AbortSignal.timeout(3000) }).then(
      (res) => res.status,
      (error: Error) => error.message
    )
    if (ready !== 200) result.problems.push(`replica ${replica.name}: /ready answered ${ready} after the faults`)
  }

  const sql = pg.connect()
  const verdict = await verify(sql, load, { exact: false, sheet: fixtures.sheet })
  log(
    `  writes: ${load.writes.length} intended, ${verdict.checked} acknowledged, ${verdict.appliedUnacknowledged} applied though answered 503 (their commit's answer was lost with the connection), ${verdict.unresolved} without a final answer`
  )
  tally(result, load, verdict)
  return result
}
