/**
 * Scenario 4, two faults on one PostgreSQL of the scenario's own:
 * - SIGTERM of one of two replicas under load, with requests provably in flight (credits waiting on a
 *   row lock inside PostgreSQL, increments waiting in the batch window): every one of them completes
 *   with its 200, the replica exits 0, nothing answered otherwise is applied, the other replica
 *   never notices.
 * - kill -9 of PostgreSQL (postmaster and backends at once) right as writes are acknowledged: after
 *   its crash recovery on the same data directory every acknowledged write is there, exactly once.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from '../helpers/http.js'
import { isRefused } from '../helpers/processes.js'
import { until } from '../helpers/wait.js'
import { loggedErrors, ownPostgres, startReplica, type Replica } from './processes.js'
import { emptyResult, type ScenarioResult } from './report.js'
import { balances, prepare } from './setup.js'
import { send } from './transport.js'
import { judgeAnswers, verify } from './verify.js'
import { during, Load, slowest, statusCounts, type WriteRecord } from './workload.js'

const held = 20
const buffered = 10
const common = { ATTENDANCE_SIGNIN_LIMIT_PER_MINUTE: '1000000' }
// A, the replica that gets SIGTERM: its held credits wait on the row lock for the time the drain
// takes to begin, so deadlines well above that (or they would be refused, 503 after
// DATABASE_LOCK_TIMEOUT_MS, before the scenario lets the lock go) and a pool with room for them
// besides the load; a batch window long enough to see the increments buffered and signal meanwhile.
// B, the bystander that also serves on through the PostgreSQL crash, runs with the defaults.
const envA = {
  ...common,
  DATABASE_POOL_MAX: '40',
  DATABASE_LOCK_TIMEOUT_MS: '10000',
  DATABASE_STATEMENT_TIMEOUT_MS: '15000',
  INCREMENT_BATCH_WINDOW_MS: '1000',
  INCREMENT_MAX_LAG_MS: '2000'
}
// B's DATABASE_STATEMENT_TIMEOUT_MS (the default 5 s) and 3 s for connecting, queueing and answering.
const boundMs = 8000

async function queuedIncrements(replica: Replica): Promise<number> {
  const outcome = await send(replica.target, { method: 'GET', path: '/metrics', timeoutMs: 2000 })
  const line = outcome.ok ? /^tandem_increments_queued (\d+)/m.exec(outcome.text) : null
  return line ? Number(line[1]) : 0
}

export async function shutdownCrash(log: (line: string) => void): Promise<ScenarioResult> {
  const result = emptyResult('shutdown-crash')
  const pg = await ownPostgres()
  const [a, b] = [
    await startReplica('A', { ...envA, DATABASE_URL: pg.url }),
    await startReplica('B', { ...common, DATABASE_URL: pg.url })
  ]
  const fixtures = await prepare([a.url, b.url])
  const sql = pg.connect()
  // The held credits go one to each of clients of the scenario's own: a replica has at most
  // CREBITOS_STATEMENTS_PER_CLIENT statements per client in flight and queues that client's others
  // behind them, so one credit per client is sure to wait inside PostgreSQL.
  const heldClients = Array.from({ length: held }, (_, i) => 1000 + i)
  await sql`insert into clientes (id, limite) select unnest(${heldClients}::int[]), 0`
  const balancesBefore = await balances(sql)

  // ---- SIGTERM of A under load. Once A refuses connections the clients leave it, as a balancer would.
  let refusing = false
  const term = new Load({
    tag: 's',
    targets: () => (refusing ? [b.target] : [a.target, b.target]),
    // No increments from the lanes: on A they would open and close batch windows of their own, and
    // the ones the scenario buffers on purpose might be committed before the signal.
    mix: { credit: 4, debit: 1, signIn: 2, counter: 2, extrato: 1 },
    ...fixtures,
    clients: [1, 2, 3, 4, 5],
    incrementKeys: ['faults-term-buffered'],
    // A's deadlines are 15 s: what it holds may take that long.
    timeoutMs: 20_000,
    lanes: 10
  })
  term.start()
  await sleep(1500)

  const locker = await sql.reserve()
  await locker`begin`
  await locker`select 1 from clientes where id = any(${heldClients}::int[]) for update`
  const heldWrites = heldClients.map((clientId) => term.run('credit', a.target, { clientId }) as Promise<WriteRecord>)
  await until(
    async () => {
      const [{ waiting }] = await sql<{ waiting: number }[]>`
      select count(*)::int as waiting from pg_stat_activity where application_name = 'tandem' and wait_event_type = 'Lock'`
      return waiting >= held
    },
    `the ${held} held credits to wait on the row lock inside PostgreSQL`,
    10_000
  )
  const bufferedWrites = Array.from(
    { length: buffered },
    () => term.run('increment', a.target, { incrementKey: 'faults-term-buffered' }) as Promise<WriteRecord>
  )
  const bufferedSeen = await until(
    async () => (await queuedIncrements(a)) >= buffered,
    'the increments to be queued',
    800
  ).then(
    () => true,
    () => false
  )

  const signalledAt = Date.now()
  const exited = a.stop('SIGTERM')
  await until(() => isRefused(a.port), 'A to stop accepting connections', 5000)
  refusing = true
  await locker`commit`
  locker.release()
  const heldOutcomes = await Promise.all(heldWrites)
  const bufferedOutcomes = await Promise.all(bufferedWrites)
  const code = await Promise.race([exited, sleep(20_000).then(() => 'no exit within 20 s')])
  const exitedAt = Date.now()
  await sleep(1000)
  await term.stop()
  result.faults++

  const notHeld = heldOutcomes.filter((write) => !write.acked)
  if (notHeld.length > 0)
    result.problems.push(
      `SIGTERM: ${notHeld.length} of the ${held} credits held in flight were not answered 200: ${statusCounts(notHeld.map((write) => ({ op: write.op, target: write.target, outcome: write.last, retry: false })))}`
    )
  const notBuffered = bufferedOutcomes.filter((write) => !write.acked)
  if (notBuffered.length > 0)
    result.problems.push(`SIGTERM: ${notBuffered.length} of the ${buffered} buffered increments were not answered 200`)
  if (!bufferedSeen)
    result.problems.push(`SIGTERM: the ${buffered} increments were not seen queued on A before the signal`)
  if (code !== 0) result.problems.push(`SIGTERM: A exited with ${code}: ${a.output().slice(-800)}`)
  const { unexpected } = loggedErrors(a)
  if (unexpected.length > 0)
    result.problems.push(`SIGTERM: A logged ${unexpected.length} errors besides its 503s, e.g. ${unexpected[0]}`)

  const drain = during(term.attempts, signalledAt, exitedAt)
  const onA = drain.filter((attempt) => attempt.target === 'A')
  const resets = onA.filter(({ outcome }) => !outcome.ok && outcome.error !== 'ECONNREFUSED')
  log(
    `  SIGTERM: A drained in ${exitedAt - signalledAt} ms, exit ${code}; ${held} held credits ${statusCounts(heldOutcomes.map((write) => ({ op: write.op, target: write.target, outcome: write.last, retry: false })))}, ${buffered} buffered increments ${statusCounts(bufferedOutcomes.map((write) => ({ op: write.op, target: write.target, outcome: write.last, retry: false })))}; requests to A meanwhile: ${statusCounts(onA)} (${resets.filter(({ outcome }) => !outcome.ok && outcome.reused).length} of the resets on a reused kept-alive socket)`
  )
  // A reset is allowed only where the request was never read (a kept-alive socket closed as idle
  // just as it was reused, or a connection not yet served when the listener closed): the writes
  // check below finds any that was applied, which would be an accepted request cut off.
  result.problems.push(
    ...judgeAnswers(
      term.attempts.filter((attempt) => attempt.target === 'A'),
      {
        boundMs: 15_000 + 3000,
        allowed: [200, 201, 422],
        what: 'SIGTERM: requests to A',
        failuresAllowed: ({ outcome }) => outcome.startedAt + outcome.ms >= signalledAt
      }
    )
  )
  result.problems.push(
    ...judgeAnswers(
      term.attempts.filter((attempt) => attempt.target === 'B'),
      { boundMs, allowed: [200, 201, 422], what: 'SIGTERM: requests to B' }
    )
  )
  const b503 = term.attempts.filter(
    (attempt) => attempt.target === 'B' && attempt.outcome.ok && attempt.outcome.status === 503
  ).length
  if (b503 > 0) result.problems.push(`SIGTERM: B answered 503 ×${b503} though only A was stopped`)
  const termVerdict = await verify(sql, term, { exact: true, balancesBefore, sheet: fixtures.sheet })
  result.slowestMs = slowest(drain)

  // ---- kill -9 of PostgreSQL as acknowledgements arrive, on B's load.
  const sheet = await request(b.url, 'POST', '/api/attendance/sheet/new', {
    json: { courseUnit: 1, summary: 'crash' },
    headers: { authorization: `Bearer ${fixtures.tokens[0]}` }
  })
  if (sheet.status !== 201) throw new Error(`creating a sheet: ${sheet.status} ${sheet.text}`)
  let acks = 0
  let acksAtKill = 0
  let killedAt = 0
  const crash = new Load({
    tag: 'k',
    targets: () => [b.target],
    mix: { credit: 4, debit: 1, increment: 3, signIn: 2, counter: 1 },
    ...fixtures,
    sheet: sheet.body.attendanceId,
    incrementKeys: ['faults-crash-a', 'faults-crash-b'],
    timeoutMs: boundMs,
    lanes: 10,
    // The kill goes out in the very callback of an acknowledgement, with others mid-commit.
    onFinal: (write) => {
      if (write.acked && ++acks === 150 && !killedAt) {
        killedAt = Date.now()
        acksAtKill = acks
        pg.kill()
      }
    }
  })
  crash.start()
  let recoveredAt = 0
  try {
    await until(() => killedAt > 0, '150 acknowledgements before the kill', 20_000)
    await pg.gone()
    await pg.start()
    const restartedAt = Date.now()
    await until(
      () =>
        crash.attempts.some(({ outcome }) => outcome.startedAt >= restartedAt && outcome.ok && outcome.status < 300),
      'B to answer again after the crash recovery',
      20_000
    )
    recoveredAt = Date.now()
    log(
      `  kill -9 of PostgreSQL as acknowledgement ${acksAtKill} arrived: restarted after ${restartedAt - killedAt} ms (crash recovery), B answering again ${recoveredAt - restartedAt} ms later`
    )
    await sleep(500)
  } finally {
    await crash.stop()
  }
  result.faults++
  const postgresLog = await pg.log()
  if (!/not properly shut down|automatic recovery in progress/.test(postgresLog))
    result.problems.push('kill -9: PostgreSQL did not log a crash recovery')
  const met = during(crash.attempts, killedAt, recoveredAt)
  log(`  kill -9: ${met.length} requests met it, ${statusCounts(met)}, slowest ${slowest(met)} ms`)
  result.slowestMs = Math.max(result.slowestMs, slowest(met))
  result.problems.push(
    ...judgeAnswers(crash.attempts, { boundMs, allowed: [200, 201, 422], what: 'kill -9: requests to B' })
  )
  if (!b.alive()) result.problems.push(`kill -9: replica B exited (${b.child.exitCode ?? b.child.signalCode})`)
  const check = pg.connect()
  const crashVerdict = await verify(check, crash, { exact: false, sheet: sheet.body.attendanceId })
  log(
    `  writes: SIGTERM ${term.writes.length} intended, ${termVerdict.checked} acknowledged; kill -9 ${crash.writes.length} intended, ${crashVerdict.checked} acknowledged, ${crashVerdict.appliedUnacknowledged} applied though their answer was lost`
  )

  result.requests = term.requests + crash.requests
  result.acked = termVerdict.checked + crashVerdict.checked
  result.retries = term.retries + crash.retries
  result.duplicates = termVerdict.duplicates + crashVerdict.duplicates
  result.lost = termVerdict.lost + crashVerdict.lost
  result.problems.push(
    ...termVerdict.problems.map((problem) => `SIGTERM: ${problem}`),
    ...crashVerdict.problems.map((problem) => `kill -9: ${problem}`)
  )
  return result
}
