/**
 * Scenario 3: Redis (the counter's store) stopped under load and started again. While it is down
 * `GET /counter` answers a fast 503 and nothing else notices: the other routes answer as before and
 * /ready stays 200. Once it is back the count carries on from where it was, with no number handed
 * out twice.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { createDatabase } from '../helpers/database.js'
import { redisSkipReason, startRedisServer } from '../helpers/redis.js'
import { until } from '../helpers/wait.js'
import { onCleanup, replicaProblems, startReplica, type Replica } from './processes.js'
import { emptyResult, tally, type ScenarioResult } from './report.js'
import { balances, prepare } from './setup.js'
import { send } from './transport.js'
import { judgeAnswers, verify } from './verify.js'
import { during, Load, slowest, statusCounts } from './workload.js'

const outageMs = 3000
// "Fast": the replicas' Redis client fails a command at once while disconnected, and within its
// 1 s command timeout (src/db/redis.ts) when a command was already on the wire; plus a margin.
const fastMs = 1500
const boundMs = 8000
const counterKey = 'tandem:counter:requests'

export async function redisOutage(log: (line: string) => void): Promise<ScenarioResult> {
  const result = emptyResult('redis-outage')
  const skipped = redisSkipReason()
  if (skipped) return { ...result, skipped }
  const redis = await startRedisServer() // appendonly yes, fsync always: the count survives the stop
  onCleanup('redis-server', () => redis.remove())
  const db = await createDatabase()
  onCleanup('database', () => db.drop())
  const env = { DATABASE_URL: db.url, REDIS_URL: redis.url, ATTENDANCE_SIGNIN_LIMIT_PER_MINUTE: '1000000' }
  const replicas = [await startReplica('A', env), await startReplica('B', env)]
  const fixtures = await prepare(replicas.map((replica) => replica.url))
  const balancesBefore = await balances(db.sql)
  const load = new Load({
    tag: 'r',
    targets: () => replicas.map((replica) => replica.target),
    mix: { counter: 4, credit: 3, debit: 1, increment: 3, signIn: 1, extrato: 1 },
    ...fixtures,
    incrementKeys: ['faults-redis-a', 'faults-redis-b'],
    timeoutMs: boundMs,
    lanes: 10
  })

  // /ready on both replicas every 200 ms, the whole time.
  const readiness: Array<{ at: number; replica: string; status: number | string; redis?: string }> = []
  let watching = true
  const watcher = (async () => {
    while (watching) {
      for (const replica of replicas) {
        const outcome = await send(replica.target, { method: 'GET', path: '/ready', timeoutMs: 3000 })
        readiness.push({
          at: outcome.startedAt,
          replica: replica.name,
          status: outcome.ok ? outcome.status : outcome.error,
          redis: outcome.ok ? outcome.body?.redis : undefined
        })
      }
      await sleep(200)
    }
  })()

  let stopFrom = 0
  let down = 0
  let startFrom = 0
  let up = 0
  load.start()
  try {
    await sleep(1500)
    stopFrom = Date.now()
    await redis.stop()
    down = Date.now()
    await sleep(outageMs)
    startFrom = Date.now()
    await redis.start()
    up = Date.now()
    const counted = (replica: Replica) =>
      load.attempts.some(
        ({ op, target, outcome }) =>
          op === 'counter' && target === replica.name && outcome.startedAt >= up && outcome.ok && outcome.status === 200
      )
    await until(() => replicas.every(counted), 'the counter to answer 200 on every replica again', 15_000)
    log(
      `  Redis down ${startFrom - down} ms; the counter answered 200 on both replicas again ${Date.now() - up} ms after it was back`
    )
    result.faults++
    await sleep(1000)
  } finally {
    await load.stop()
    watching = false
    await watcher
  }

  // Requests alone, one after another, alternating replicas: each must get the next number.
  const sequential: number[] = []
  for (let i = 0; i < 20; i++) {
    const outcome = await send(replicas[i % 2].target, { method: 'GET', path: '/counter', timeoutMs: boundMs })
    if (outcome.ok && outcome.status === 200) sequential.push(outcome.body.clusterRequests)
    else
      result.problems.push(
        `sequential GET /counter ${i + 1} after the recovery: ${outcome.ok ? `${outcome.status} ${outcome.text}` : outcome.error}`
      )
  }

  // While Redis was down (requests sent after it stopped and answered before it was started): 503s, fast.
  const counterAttempts = load.attempts.filter((attempt) => attempt.op === 'counter')
  const inside = counterAttempts.filter(
    ({ outcome }) => outcome.startedAt >= down && outcome.startedAt + outcome.ms <= startFrom
  )
  const notRefused = inside.filter(({ outcome }) => !outcome.ok || outcome.status !== 503)
  if (notRefused.length > 0)
    result.problems.push(
      `while Redis was down, ${notRefused.length} GET /counter were not 503: ${statusCounts(notRefused)}`
    )
  const slowestRefusal = slowest(inside)
  if (slowestRefusal > fastMs)
    result.problems.push(`while Redis was down, a GET /counter took ${slowestRefusal} ms (over ${fastMs} ms)`)
  result.problems.push(...judgeAnswers(counterAttempts, { boundMs, allowed: [200], what: 'GET /counter' }))
  const met = during(load.attempts, stopFrom, up)
  log(
    `  GET /counter while down: ${inside.length} answered, ${statusCounts(inside)}, slowest ${slowestRefusal} ms; all requests meeting the outage: ${statusCounts(met)}`
  )
  result.slowestMs = slowest(met)

  // Every other route never noticed.
  const others = load.attempts.filter((attempt) => attempt.op !== 'counter')
  result.problems.push(
    ...judgeAnswers(others, { boundMs, allowed: [200, 201, 422], what: 'routes other than the counter' })
  )
  const others503 = others.filter(({ outcome }) => outcome.ok && outcome.status === 503)
  if (others503.length > 0)
    result.problems.push(`routes other than the counter answered 503 ×${others503.length} while only Redis was down`)
  const notReady = readiness.filter((probe) => probe.status !== 200)
  if (notReady.length > 0)
    result.problems.push(`/ready was not 200 ×${notReady.length} (e.g. ${notReady[0].replica}: ${notReady[0].status})`)
  const degraded = readiness.filter((probe) => probe.redis === 'down').length
  log(
    `  /ready: ${readiness.length} probes, all ${notReady.length === 0 ? '200' : 'but some 200'}; ${degraded} reported redis down`
  )
  if (degraded === 0) result.problems.push('/ready never reported Redis down during the outage')

  // The count carries on. It is handed out in INCRBY blocks (README, counter): a block is the
  // numbers of the requests waiting together, and each of them gets one, so while nothing fails there
  // is no gap. But an INCRBY Redis applies as it shuts down, whose answer the replica never gets,
  // leaves its block unused (its requests were answered 503): a strict no-gap check across the outage
  // would be wrong. So the checks are that no number is handed out twice, that every number after the
  // recovery is above the highest before it, that requests one at a time get consecutive numbers,
  // and that Redis's total is the highest number handed out; the numbers skipped are reported.
  const before = load.counter.filter((answer) => answer.at <= stopFrom).map((answer) => answer.value)
  const after = [...load.counter.filter((answer) => answer.at >= up).map((answer) => answer.value), ...sequential]
  const highestBefore = Math.max(0, ...before)
  const lowestAfter = Math.min(...after)
  if (!(lowestAfter > highestBefore))
    result.problems.push(
      `the counter went back: ${lowestAfter} handed out after the recovery, ${highestBefore} before the outage`
    )
  for (let i = 1; i < sequential.length; i++) {
    if (sequential[i] !== sequential[i - 1] + 1) {
      result.problems.push(`sequential GET /counter after the recovery: ${sequential[i - 1]} then ${sequential[i]}`)
      break
    }
  }
  const all = [...load.counter.map((answer) => answer.value), ...sequential]
  const distinct = new Set(all)
  if (distinct.size !== all.length) {
    result.duplicates += all.length - distinct.size
    result.problems.push(`the counter handed out ${all.length - distinct.size} numbers twice`)
  }
  const highest = Math.max(...all)
  const lowest = Math.min(...all)
  const neverHandedOut = Array.from({ length: highest - lowest + 1 }, (_, i) => lowest + i).filter(
    (n) => !distinct.has(n)
  )
  const probe = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  let stored: number | string
  try {
    await probe.connect()
    stored = Number(await probe.get(counterKey))
  } catch (error) {
    stored = `unreadable: ${(error as Error).message}`
  } finally {
    probe.disconnect()
  }
  // Reported, not judged (see above).
  const missing =
    neverHandedOut.length === 0
      ? ''
      : ` (${neverHandedOut.slice(0, 8).join(', ')}${neverHandedOut.length > 8 ? ', …' : ''})`
  log(
    `  counter: ${all.length} numbers ${lowest}…${highest}, ${neverHandedOut.length} in between never handed out${missing}; highest before the outage ${highestBefore}, first after ${lowestAfter}; Redis holds ${stored}`
  )
  if (stored !== highest)
    result.problems.push(`Redis holds ${stored} for the counter, but the highest number handed out is ${highest}`)

  const verdict = await verify(db.sql, load, { exact: true, balancesBefore, sheet: fixtures.sheet })
  if (verdict.unresolved > 0)
    result.problems.push(`${verdict.unresolved} writes got no final answer (only Redis was down)`)
  for (const replica of replicas) result.problems.push(...replicaProblems(replica, log))
  result.requests += sequential.length
  tally(result, load, verdict)
  return result
}
