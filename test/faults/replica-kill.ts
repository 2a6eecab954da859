/**
 * Scenario 1: kill -9 of one of two replicas in the middle of a mixed load over every module. Each
 * intended write carries an Idempotency-Key of its own; a client that gets no answer, a 503 or a 409
 * `idempotency-key-in-use` retries the same request with the same key on the surviving replica. In
 * the end every acknowledged write is in PostgreSQL exactly once, every intended write is applied
 * exactly once (balances are the sums of the acknowledged transactions, increments the count of the
 * acknowledged ones, the sheet holds exactly the acknowledged sign-ins), and the survivor serves on.
 */
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { createDatabase } from '../helpers/database.js'
import { until } from '../helpers/wait.js'
import { killGroup } from '../helpers/servers.js'
import { loggedErrors, onCleanup, startReplica, type Replica } from './processes.js'
import { emptyResult, tally, type ScenarioResult } from './report.js'
import { balances, prepare, type Fixtures } from './setup.js'
import { describe, send, type Outcome } from './transport.js'
import { judgeAnswers, verify } from './verify.js'
import { during, Load, slowest, statusCounts, type WriteRecord } from './workload.js'

const boundMs = 10_000
/** The advisory lock the slowed writes' commits wait on while the test holds it. */
const commitGate = 7_300_001

/**
 * The contract at its simplest, before any fault: the same request with the same key on the other
 * replica replays the first answer byte for byte and applies nothing; the key with another body is
 * refused. Without this the load's figures would only say that retries duplicate.
 */
async function contract(
  a: Replica,
  b: Replica,
  fixtures: Fixtures,
  sql: Awaited<ReturnType<typeof createDatabase>>['sql']
): Promise<string[]> {
  const problems: string[] = []
  const bearer = { authorization: `Bearer ${fixtures.tokens[0]}` }
  const cases = [
    {
      what: 'POST /clientes/1/transacoes',
      path: '/clientes/1/transacoes',
      json: { valor: 7, tipo: 'c', descricao: 'probe' },
      other: { valor: 8, tipo: 'c', descricao: 'probe' },
      headers: {}
    },
    {
      what: 'POST /increment',
      path: '/increment',
      json: { key: 'faults-probe', value: 1 },
      other: { key: 'faults-probe', value: 2 },
      headers: bearer
    },
    {
      what: 'POST …/student/registration',
      path: `/api/attendance/sheet/${fixtures.sheet}/student/registration`,
      json: { nmec: 1, name: 'Probe Student' },
      other: { nmec: 2, name: 'Probe Student' },
      headers: {}
    }
  ]
  for (const { what, path, json, other, headers } of cases) {
    const key = randomUUID()
    const request = (to: Replica, body: unknown) =>
      send(to.target, {
        method: 'POST',
        path,
        json: body,
        headers: { ...headers, 'idempotency-key': key },
        timeoutMs: boundMs
      })
    const first = await request(a, json)
    const again = await request(b, json)
    const reused = await request(b, other)
    const show = (outcome: Outcome) => (outcome.ok ? `${outcome.status} ${outcome.text.slice(0, 120)}` : outcome.error)
    if (!first.ok || first.status >= 300) {
      problems.push(`${what}: the first request was answered ${show(first)}`)
      continue
    }
    if (
      !again.ok ||
      again.status !== first.status ||
      again.text !== first.text ||
      again.headers['idempotent-replayed'] !== 'true'
    ) {
      problems.push(
        `${what}: the same key and request on the other replica got ${show(again)} (replayed: ${again.ok ? again.headers['idempotent-replayed'] : '-'}), not a replay of ${show(first)}`
      )
    }
    if (!reused.ok || reused.status !== 422 || reused.body?.error !== 'idempotency-key-reused') {
      problems.push(`${what}: the same key with another body got ${show(reused)}, not 422 idempotency-key-reused`)
    }
  }
  const [{ rows }] = await sql<
    { rows: number }[]
  >`select count(*)::int as rows from transacoes where descricao = 'probe'`
  const [increment] = await sql<{ value: string }[]>`select value from increments where key = 'faults-probe'`
  const signIns = await sql`select nmec from registrations where nmec in (1, 2)`
  if (rows !== 1) problems.push(`the probe credit is stored ${rows} times`)
  if (Number(increment?.value) !== 1) problems.push(`the probe increment's total is ${increment?.value}, not 1`)
  if (signIns.length !== 1) problems.push(`the probe sign-in is stored ${signIns.length} times`)
  return problems
}

export async function replicaKill(log: (line: string) => void): Promise<ScenarioResult> {
  const result = emptyResult('replica-kill')
  const db = await createDatabase()
  onCleanup('database', () => db.drop())
  const env = { DATABASE_URL: db.url, ATTENDANCE_SIGNIN_LIMIT_PER_MINUTE: '1000000' }
  // A's writes held on the row lock stay inside PostgreSQL, their keys claimed, until it is let go;
  // its pool has room for them, the writes caught in their commit and the load together.
  const a = await startReplica('A', {
    ...env,
    DATABASE_POOL_MAX: '40',
    DATABASE_LOCK_TIMEOUT_MS: '5000',
    DATABASE_STATEMENT_TIMEOUT_MS: '10000'
  })
  const b = await startReplica('B', env)
  const fixtures = await prepare([a.url, b.url], 3)

  const contractProblems = await contract(a, b, fixtures, db.sql)
  log(
    `  Idempotency-Key before any fault: ${contractProblems.length === 0 ? 'replayed across replicas on every route, reuse refused' : `${contractProblems.length} problems`}`
  )
  result.problems.push(...contractProblems.map((problem) => `contract: ${problem}`))
  const balancesBefore = await balances(db.sql)

  // The fault, in three steps, so that it meets writes in each state the key must handle:
  // - credits of A held on a row lock (client 4, which the load leaves alone) across the kill: inside
  //   PostgreSQL, key claimed, when A dies; their retries find the key in use until PostgreSQL has
  //   rolled them back, then apply them;
  // - writes of A caught in their COMMIT (a deferred trigger of the test's own holds the commit of a
  //   sign-in and some increments on an advisory lock the test holds), SIGSTOP of A, then the lock
  //   let go: PostgreSQL commits them while A answers nobody, so they are applied with their answers
  //   lost, for the retries to replay (a bare kill -9 leaves that window to chance: it is a
  //   millisecond wide; a fixed 300 ms sleep in the commit did too, when the seven writes did not
  //   reach their commits within 300 ms of each other under a loaded CI);
  // - then kill -9 of A's process group.
  // The commit waits for the gate with no lock timeout of its own (A's 5 s would roll it back);
  // A's statement timeout still bounds it.
  await db.sql.unsafe(`create function faults_slow_commit() returns trigger language plpgsql as $$
    begin
      perform set_config('lock_timeout', '0', true);
      perform pg_advisory_xact_lock_shared(${commitGate});
      return null;
    end $$`)
  await db.sql`create constraint trigger faults_slow_registration after insert on registrations
    deferrable initially deferred for each row when (new.nmec >= 5000000) execute function faults_slow_commit()`
  await db.sql`create constraint trigger faults_slow_increment after insert or update on increments
    deferrable initially deferred for each row when (new.key like 'faults-slow-%') execute function faults_slow_commit()`
  let frozenAt = 0
  let killedAt = 0
  let releasedAt = 0
  // After the kill A stays in the rotation for a second, as a balancer that has not noticed yet:
  // its refused connections are retried on B like any other unanswered request.
  const inRotation = () => !killedAt || Date.now() < killedAt + 1000
  const load = new Load({
    tag: 'x',
    targets: () => (inRotation() ? [a.target, b.target] : [b.target]),
    mix: { credit: 4, debit: 2, increment: 3, signIn: 2, counter: 2, extrato: 1 },
    ...fixtures,
    clients: [1, 2, 3, 5],
    incrementKeys: ['faults-kill-a', 'faults-kill-b', 'faults-kill-c'],
    timeoutMs: boundMs,
    lanes: 16,
    // Before the fault a retry goes to the other replica; from it on, to the survivor.
    retry: { next: (previous) => (frozenAt || previous === a.target ? b.target : a.target), maxAttempts: 10 }
  })
  load.start()
  const locker = await db.sql.reserve()
  const gate = await db.sql.reserve()
  let gateOpen = false
  let held: Array<Promise<WriteRecord>> = []
  let committing: Array<Promise<WriteRecord>> = []
  try {
    await sleep(1500)
    await locker`begin`
    await locker`select 1 from clientes where id = 4 for update`
    held = Array.from({ length: 6 }, () => load.run('credit', a.target, { clientId: 4 }) as Promise<WriteRecord>)
    await until(
      async () => {
        const [{ waiting }] = await db.sql<{ waiting: number }[]>`
        select count(*)::int as waiting from pg_stat_activity where application_name = 'tandem' and wait_event_type = 'Lock'`
        return waiting >= held.length
      },
      'the held credits to wait on the row lock inside PostgreSQL',
      10_000
    )
    // Increments on keys of their own, and one sign-in: every sign-in from one address locks the
    // address's row of the unknown-sheet limit until its transaction ends, so a second slowed one
    // would only queue behind the first.
    await gate`select pg_advisory_lock(${commitGate})`
    committing = Array.from(
      { length: 7 },
      (_, i) =>
        load.run(i === 0 ? 'signIn' : 'increment', a.target, {
          nmec: 5_000_000,
          incrementKey: `faults-slow-${i}`
        }) as Promise<WriteRecord>
    )
    await until(
      async () => {
        const [{ gated }] = await db.sql<{ gated: number }[]>`
        select count(*)::int as gated from pg_stat_activity where application_name = 'tandem' and wait_event = 'advisory'`
        return gated >= committing.length
      },
      'the slowed writes to be in their commit',
      10_000
    )
    frozenAt = Date.now()
    process.kill(a.child.pid!, 'SIGSTOP')
    await gate`select pg_advisory_unlock(${commitGate})`
    gateOpen = true
    await sleep(400)
    killedAt = Date.now()
    killGroup(a.child)
    // Longer than B's lock timeout: the first retries of the held credits find their keys in use.
    await sleep(2000)
    await locker`commit`
    releasedAt = Date.now()
    await sleep(2500)
  } finally {
    if (!releasedAt) await locker`rollback`.catch(() => {})
    if (!gateOpen) await gate`select pg_advisory_unlock_all()`.catch(() => {})
    locker.release()
    gate.release()
    await load.stop()
  }
  const heldWrites = await Promise.all(held)
  const committed = await Promise.all(committing)
  await a.stop() // reaped: the exit status says how it ended
  result.faults = 1
  if (a.child.signalCode !== 'SIGKILL')
    result.problems.push(`A ended with ${a.child.exitCode ?? a.child.signalCode}, not by the SIGKILL`)

  // Requests to A may go unanswered once it is frozen; B must answer every one, and every answer
  // must be one the client can act on (409 only as idempotency-key-in-use, checked with the writes).
  const fromA = ({ target, outcome }: { target: string; outcome: Outcome }) =>
    target === 'A' && outcome.startedAt + outcome.ms >= frozenAt
  result.problems.push(
    ...judgeAnswers(load.attempts, { boundMs, allowed: [200, 201, 409, 422], what: 'answers', failuresAllowed: fromA })
  )
  const met = load.writes.filter((write) => write.startedAt <= releasedAt && write.finishedAt >= frozenAt)
  const slowestWrite = met.reduce((max, write) => Math.max(max, write.finishedAt - write.startedAt), 0)
  const window = during(load.attempts, frozenAt, releasedAt + 1000)
  result.slowestMs = slowest(window)
  const onA = load.attempts.filter(
    (attempt) => attempt.target === 'A' && attempt.outcome.startedAt + attempt.outcome.ms >= frozenAt
  )
  log(
    `  SIGSTOP, 400 ms, kill -9 of A: ${onA.length} attempts on A met it (${statusCounts(onA)}); all attempts meeting the fault: ${statusCounts(window)}`
  )
  const replayed = load.writes.filter((write) => write.replayed).length
  const retried = load.writes.filter((write) => write.attempts > 1)
  const inUse = load.attempts.filter(
    ({ outcome }) => outcome.ok && outcome.status === 409 && outcome.body?.error === 'idempotency-key-in-use'
  ).length
  log(
    `  writes: ${load.writes.length} intended, ${met.length} met the fault, ${retried.length} retried (${statusCounts(retried.map((write) => ({ op: write.op, target: write.target, outcome: write.last, retry: true })))} in the end), ` +
      `${replayed} answered by a replay, ${inUse} answers 409 idempotency-key-in-use; the slowest write resolved ${slowestWrite} ms after its first attempt`
  )
  const notReplayed = committed.filter((write) => !write.replayed || !write.acked)
  log(
    `  the ${committed.length} writes A had in their commit as it froze: ${statusCounts(committed.map((write) => ({ op: write.op, target: write.target, outcome: write.last, retry: false })))} in the end, ${committed.length - notReplayed.length} by a replay`
  )
  if (notReplayed.length > 0)
    result.problems.push(
      `${notReplayed.length} writes committed as A froze were not acknowledged by a replay: ${notReplayed.map((write) => `${write.op} ${describe(write.last)} replayed=${write.replayed}`).join(', ')}`
    )
  log(
    `  the ${heldWrites.length} credits held inside PostgreSQL when A died: ${statusCounts(heldWrites.map((write) => ({ op: write.op, target: write.target, outcome: write.last, retry: false })))} in the end, after ${heldWrites.map((write) => write.attempts).join(', ')} attempts`
  )

  // The survivor serves on: its probes, a write, the counter.
  const survivor = await Promise.all([
    send(b.target, { method: 'GET', path: '/ready', timeoutMs: 3000 }),
    send(b.target, {
      method: 'POST',
      path: '/clientes/5/transacoes',
      json: { valor: 1, tipo: 'c', descricao: 'after' },
      headers: { 'idempotency-key': randomUUID() },
      timeoutMs: 3000
    }),
    send(b.target, { method: 'GET', path: '/counter', timeoutMs: 3000 })
  ])
  const survivorStatuses = survivor.map((outcome) => (outcome.ok ? outcome.status : outcome.error))
  if (survivorStatuses.some((status) => status !== 200))
    result.problems.push(
      `the survivor after the load: /ready, a credit, /counter answered ${survivorStatuses.join(', ')}`
    )
  const afterKill = load.attempts.filter(
    (attempt) =>
      attempt.target === 'B' &&
      attempt.outcome.startedAt > killedAt &&
      attempt.outcome.ok &&
      attempt.outcome.status < 300
  ).length
  log(
    `  survivor B: ${afterKill} requests answered 2xx after the kill; then /ready, a credit, /counter: ${survivorStatuses.join(', ')}`
  )
  const { refusals, unexpected } = loggedErrors(b)
  if (unexpected.length > 0)
    result.problems.push(`B logged ${unexpected.length} errors besides ${refusals} for its 503s, e.g. ${unexpected[0]}`)
  if (!b.alive()) result.problems.push(`B exited (${b.child.exitCode ?? b.child.signalCode})`)

  // The survivor's own credit is in client 5's balance too (the probe's was before the load).
  balancesBefore.set(5, (balancesBefore.get(5) ?? 0) + (survivor[1].ok && survivor[1].status === 200 ? 1 : 0))
  const verdict = await verify(db.sql, load, { exact: true, balancesBefore, sheet: fixtures.sheet })
  if (verdict.unresolved > 0)
    result.problems.push(`${verdict.unresolved} intended writes had no final answer after every retry`)
  result.requests += survivor.length
  tally(result, load, verdict)
  return result
}
