import { randomUUID } from 'node:crypto'
import {
  type ConsistencyFailure,
  type Context,
  type Reply,
  type Scenario,
  type ScenarioRun,
  rampThenHold
} from '../scenario.js'

const hotKeys = 4
const coldKeys = 5000
const readBackConcurrency = 16
const setupAttempts = 10

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function retryAfterMs(reply: Extract<Reply, { status: number }>): number {
  const seconds = Number(reply.headers['retry-after'])
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 5) * 1000 : 500
}

/**
 * POSTs `body` to `path` until it is answered `expected`: a 503 (too many passwords being hashed)
 * is waited out, anything else is the setup's failure, a 429 naming the limit the target must raise.
 */
async function setupPost(ctx: Context, group: string, path: string, body: unknown, expected: number) {
  let answer: unknown
  for (let attempt = 1; attempt <= setupAttempts && !ctx.signal.aborted; attempt++) {
    let wait = 0
    const outcome = await ctx.step(async () => {
      const reply = await ctx.http({
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body)
      })
      if ('error' in reply) return { group, ok: false, reason: reply.error, detail: reply.message }
      if (reply.status === expected) {
        answer = reply.body
        return { group, ok: true }
      }
      if (reply.status === 503) wait = retryAfterMs(reply)
      return { group, ok: false, reason: `status ${reply.status}`, detail: reply.text.slice(0, 200) }
    })
    if (outcome.ok) return answer
    if (wait === 0) {
      const limit = path === '/api/users' ? 'REGISTRATION_LIMIT_PER_MINUTE' : 'LOGIN_ADDRESS_LIMIT_PER_MINUTE'
      const hint = outcome.reason === 'status 429' ? ` (raise ${limit} on the target)` : ''
      throw new Error(`${group}: ${outcome.reason}${hint}${outcome.detail ? `: ${outcome.detail}` : ''}`)
    }
    await delay(wait)
  }
  throw new Error(`${group}: still refused after ${setupAttempts} attempts`)
}

/** Registers a new user and logs in: the bearer token of its session (setup steps, in the report). */
export async function signUp(ctx: Context, names: { firstName: string; lastName: string }): Promise<string> {
  // Not from the seeded random: a run repeated with its seed must not meet the accounts it made before.
  const email = `loadtest-${randomUUID()}@example.com`
  const password = randomUUID()
  await setupPost(ctx, 'setup: register', '/api/users', { email, password, ...names }, 201)
  const session = (await setupPost(ctx, 'setup: log in', '/api/sessions', { email, password }, 201)) as {
    token?: unknown
  }
  if (typeof session?.token !== 'string') throw new Error('setup: log in answered no token')
  return session.token
}

interface KeyRecord {
  /** Sum of the acknowledged increments. */
  acked: number
  /** Sum of the increments left without a clear answer: each may or may not be stored. */
  unknown: number
  /** Each acknowledged increment with the running total it was answered. */
  answers: Array<{ value: number; total: number }>
}

function run(): ScenarioRun {
  let token = ''
  let prefix = ''
  const keys = new Map<string, KeyRecord>()
  const record = (key: string) => {
    let found = keys.get(key)
    if (!found) keys.set(key, (found = { acked: 0, unknown: 0, answers: [] }))
    return found
  }

  return {
    async validate(ctx) {
      await ctx.step(async () => {
        const group = 'validate: no session is 401'
        const reply = await ctx.http({
          method: 'POST',
          path: '/increment',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ key: 'loadtest-validate', value: 1 })
        })
        if ('status' in reply && reply.status === 401) return { group, ok: true }
        return { group, ok: false, reason: 'error' in reply ? reply.error : `status ${reply.status}` }
      })
    },

    async setup(ctx) {
      token = await signUp(ctx, { firstName: 'Load', lastName: 'Test' })
      // Keys are shared by every user and never deleted: a prefix of this run's own (not from the
      // seeded random, which repeats) starts each at 0.
      prefix = `loadtest-${randomUUID()}`
    },

    async request(stream, ctx) {
      const key =
        stream === 'hot'
          ? `${prefix}-hot-${ctx.random.int(1, hotKeys)}`
          : `${prefix}-cold-${ctx.random.int(1, coldKeys)}`
      const value = ctx.random.int(1, 100)
      const state = record(key)
      const reply = await ctx.http({
        method: 'POST',
        path: '/increment',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ key, value })
      })
      if ('error' in reply) {
        state.unknown += value
        return { group: stream, ok: false, reason: reply.error, detail: reply.message }
      }
      // The README: a refusal (503 queue full or deadline, 4xx) writes nothing; any other status may have.
      if (reply.status !== 200) {
        if (reply.status >= 500 && reply.status !== 503) state.unknown += value
        return { group: stream, ok: false, reason: `status ${reply.status}`, detail: reply.text.slice(0, 200) }
      }
      const body = reply.body as { key?: unknown; value?: unknown } | undefined
      state.acked += value
      if (body?.key !== key || !Number.isSafeInteger(body.value)) {
        ctx.inconsistency('malformed-answer', `${key} +${value}: ${reply.text.slice(0, 200)}`)
        return { group: stream, ok: false, reason: 'malformed answer' }
      }
      state.answers.push({ value, total: body.value as number })
      return { group: stream, ok: true }
    },

    async finish(ctx) {
      const failures: ConsistencyFailure[] = []
      const pending = [...keys.entries()]
      const worker = async () => {
        for (let next = pending.pop(); next && !ctx.signal.aborted; next = pending.pop()) {
          failures.push(...(await checkKey(ctx, next[0], next[1])))
        }
      }
      await Promise.all(Array.from({ length: readBackConcurrency }, worker))
      return failures
    }
  }
}

/**
 * The key's stored total against its acknowledged increments, and the running totals answered
 * against each other: values are positive, so in commit order each answered total is the previous
 * one plus its own increment (plus, at most, increments that were left without an answer).
 */
async function checkKey(ctx: Context, key: string, state: KeyRecord): Promise<ConsistencyFailure[]> {
  const failures: ConsistencyFailure[] = []
  const exact = state.unknown === 0
  let previous = 0
  for (const { value, total } of [...state.answers].sort((a, b) => a.total - b.total)) {
    const step = total - previous
    if (step < value || (exact && step !== value))
      failures.push({
        name: 'running-total',
        detail: `${key}: +${value} answered ${total}, the answer below it ${previous}`
      })
    previous = total
  }
  const reply = await ctx.http({ method: 'GET', path: `/increment/${encodeURIComponent(key)}` })
  if ('error' in reply) return [...failures, { name: 'total-unreadable', detail: `${key}: ${reply.error}` }]
  if (reply.status === 404) {
    if (state.acked > 0) failures.push({ name: 'total-lost', detail: `${key}: 404, acknowledged ${state.acked}` })
    return failures
  }
  const body = reply.body as { value?: unknown; persistedValue?: unknown } | undefined
  if (reply.status !== 200 || !Number.isSafeInteger(body?.value))
    return [
      ...failures,
      { name: 'total-unreadable', detail: `${key}: status ${reply.status} ${reply.text.slice(0, 200)}` }
    ]
  const stored = body!.value as number
  if (stored < state.acked || stored > state.acked + state.unknown || stored < previous)
    failures.push({
      name: 'total-mismatch',
      detail:
        `${key}: stored ${stored}, acknowledged increments sum to ${state.acked}` +
        (exact ? '' : ` (+ up to ${state.unknown} unanswered)`) +
        `, highest running total answered ${previous}`
    })
  if (body!.persistedValue !== stored)
    failures.push({
      name: 'persisted-behind',
      detail: `${key}: value ${stored}, persistedValue ${body!.persistedValue}`
    })
  return failures
}

export const increments: Scenario = {
  name: 'increments',
  summary:
    'POST /increment with a session: 4 hot keys (many increments each) and 5000 cold keys (one or two each), ' +
    'keys fresh for each run',
  checks: [
    'validation: POST /increment without a session is 401',
    'every 200 is {key, value} naming the key sent',
    "per key, the running totals answered, in order, each step by exactly that increment's value (no two " +
      'answers overlap, none is skipped; a step may be larger only by increments left without an answer)',
    'per key, GET /increment/:key after the load: value equals the sum of the acknowledged increments (or lies ' +
      'within the sum of those left without an answer above it), persistedValue equals value, and a key with ' +
      'nothing acknowledged or pending is 404'
  ],
  streams: [
    {
      name: 'hot',
      stages: rampThenHold(600, 10, 20)
    },
    {
      name: 'cold',
      stages: rampThenHold(300, 10, 20)
    }
  ],
  start: run
}
