import { type Context, type Outcome, type Reply, type Scenario, type ScenarioRun, rampThenHold } from '../scenario.js'

interface Answer {
  instance: string
  instanceRequests: number
  clusterRequests: number
}

const textAnswer =
  /^You are talking to instance (\S+)\. This is request (\d+) to this instance and request (\d+) to the cluster\.\n?$/

/** A 200's body as the README documents it, in JSON or (Accept: text/plain) as the one sentence. */
function answerOf(reply: Extract<Reply, { status: number }>, text: boolean): Answer | undefined {
  if (text) {
    const match = textAnswer.exec(reply.text)
    if (!match) return undefined
    return { instance: match[1], instanceRequests: Number(match[2]), clusterRequests: Number(match[3]) }
  }
  const body = reply.body as Partial<Answer> | undefined
  if (
    typeof body?.instance !== 'string' ||
    !Number.isSafeInteger(body.instanceRequests) ||
    !Number.isSafeInteger(body.clusterRequests)
  )
    return undefined
  return body as Answer
}

/** `GET /counter` until it answers 200 (a 503 reserved nothing), within a few bounded attempts. */
async function readCounter(ctx: Context): Promise<number | undefined> {
  for (let attempt = 0; attempt < 5 && !ctx.signal.aborted; attempt++) {
    const reply = await ctx.http({ method: 'GET', path: '/counter' })
    if ('status' in reply && reply.status === 200) return answerOf(reply, false)?.clusterRequests
    if ('status' in reply && reply.status !== 503) return undefined // it may have taken a number: no retry
    if ('error' in reply) return undefined
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return undefined
}

function run(): ScenarioRun {
  let first: number | undefined
  const seen = new Set<number>()
  const seenByInstance = new Map<string, Set<number>>()
  // Requests that may have been given a number nobody saw: no answer, or a status other than 200/503.
  let unknown = 0

  function judge(group: string, reply: Reply, text: boolean, ctx: Context): Outcome {
    if ('error' in reply) {
      unknown++
      return { group, ok: false, reason: reply.error, detail: reply.message }
    }
    // The README: the store down or the queue full is a 503 that reserved nothing.
    if (reply.status === 503) return { group, ok: false, reason: 'status 503' }
    if (reply.status !== 200) {
      unknown++
      return { group, ok: false, reason: `status ${reply.status}`, detail: reply.text.slice(0, 200) }
    }
    const answer = answerOf(reply, text)
    if (!answer || answer.instanceRequests < 1) {
      ctx.inconsistency('malformed-answer', reply.text.slice(0, 200))
      return { group, ok: false, reason: 'malformed answer', detail: reply.text.slice(0, 200) }
    }
    const { instance, instanceRequests, clusterRequests } = answer
    if (seen.has(clusterRequests)) {
      ctx.inconsistency('cluster-number-twice', `clusterRequests ${clusterRequests} handed out twice`)
      return { group, ok: false, reason: 'duplicate clusterRequests' }
    }
    seen.add(clusterRequests)
    if (first !== undefined && clusterRequests <= first) {
      ctx.inconsistency('cluster-number-old', `clusterRequests ${clusterRequests} ≤ the first read ${first}`)
    }
    const byInstance = seenByInstance.get(instance) ?? new Set<number>()
    seenByInstance.set(instance, byInstance)
    if (byInstance.has(instanceRequests)) {
      ctx.inconsistency('instance-number-twice', `${instance} answered instanceRequests ${instanceRequests} twice`)
      return { group, ok: false, reason: 'duplicate instanceRequests' }
    }
    byInstance.add(instanceRequests)
    return { group, ok: true }
  }

  return {
    async validate(ctx) {
      await ctx.step(async () => {
        const group = 'validate: text/plain answer'
        const reply = await ctx.http({ method: 'GET', path: '/counter', headers: { accept: 'text/plain' } })
        if ('error' in reply) return { group, ok: false, reason: reply.error, detail: reply.message }
        // Its number comes before the first read: it is judged for its shape only.
        if (reply.status !== 200 || !answerOf(reply, true))
          return { group, ok: false, reason: `status ${reply.status}`, detail: reply.text.slice(0, 200) }
        return { group, ok: true }
      })
    },

    async setup(ctx) {
      await ctx.step(async () => {
        first = await readCounter(ctx)
        if (first === undefined) return { group: 'first read', ok: false, reason: 'no number' }
        return { group: 'first read', ok: true }
      })
    },

    async request(stream, ctx) {
      const text = stream === 'counter-text'
      const reply = await ctx.http({
        method: 'GET',
        path: '/counter',
        headers: { accept: text ? 'text/plain' : 'application/json' }
      })
      return judge(stream, reply, text, ctx)
    },

    async finish(ctx) {
      const last = await readCounter(ctx)
      if (first === undefined || last === undefined)
        return [{ name: 'counter-unreadable', detail: `first read ${first}, last read ${last}: nothing to compare` }]
      return consecutive(first, last, seen, unknown)
    }
  }
}

/**
 * Between two reads with nothing else counting, the run's 200s hold exactly first+1 … last-1: the
 * README promises N concurrent requests N distinct consecutive numbers, and its blocks are reserved
 * for exactly the requests waiting (a 503 reserves none). A request left without an answer may have
 * taken a number, so each one excuses one missing number, and no more.
 */
function consecutive(first: number, last: number, seen: Set<number>, unknown: number) {
  const failures = []
  const outside = [...seen].filter((n) => n <= first || n >= last)
  if (outside.length > 0)
    failures.push({
      name: 'cluster-number-out-of-range',
      detail: `${outside.length} numbers outside (${first}, ${last}), e.g. ${outside.slice(0, 5).join(', ')}`
    })
  const missing = last - first - 1 - (seen.size - outside.length)
  if (missing > unknown)
    failures.push({
      name: 'cluster-number-gap',
      detail:
        `${missing} numbers between the first read ${first} and the last ${last} were never answered, ` +
        `and only ${unknown} requests went without a clear answer`
    })
  return failures
}

export const counter: Scenario = {
  name: 'counter',
  summary: 'GET /counter (JSON, and 1 in 10 as text/plain) across the replicas behind the target',
  checks: [
    'every 200 is {instance, instanceRequests ≥ 1, clusterRequests} (or the text/plain sentence holding them)',
    'no clusterRequests number is handed out twice, and no instance repeats an instanceRequests number',
    'every number is above a first read taken before the load and below a last read taken after it',
    'the numbers answered are exactly first+1 … last-1 (no gap), less at most one per request left without ' +
      'an answer (timeout, network error, status other than 200/503): nothing else may use the counter meanwhile'
  ],
  streams: [
    {
      name: 'counter',
      stages: rampThenHold(900, 10, 20)
    },
    {
      name: 'counter-text',
      stages: rampThenHold(100, 10, 20)
    }
  ],
  start: run
}
