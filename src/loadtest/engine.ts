import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { Client } from 'undici'
import { seededRandom } from './random.js'
import type { ArrivalStream, Context, HttpRequest, Outcome, Reply, Scenario, ScenarioRun } from './scenario.js'
import { drive, durationMs, finalRate, plannedUsers } from './schedule.js'
import type { FindMaxFigures, FindMaxStep } from './report.js'
import { Recorder, round } from './stats.js'

export interface EngineOptions {
  /** Origin without a trailing slash. */
  target: string
  /** Already scaled: what the run sends. */
  streams: ArrivalStream[]
  seed: number
  timeoutMs: number
  /** Closed model: this many workers sending back to back, each on one kept-alive connection. */
  connections?: number
  /** Run the scenario's validation phase first. */
  validate: boolean
  /** Aborted on Ctrl-C: stop sending, give what is in flight a moment, skip the final checks. */
  signal: AbortSignal
  onProgress?: (progress: Progress) => void
  /** Where the figures go (a fresh Recorder when absent). */
  recorder?: Recorder
}

export interface Progress {
  elapsedMs: number
  /** The load's planned duration; validation and setup come before it. */
  loadMs: number
  /** Undefined before the load (validation, setup). */
  loadElapsedMs: number | undefined
  /** Answers in the last full second. */
  perS: number
  p99Ms: number
  errors: number
  inFlight: number
  sent: number
}

export interface RunResult {
  model: 'open' | 'closed'
  recorder: Recorder
  /** Open model: the arrivals the schedule holds (Gatling's count); closed: undefined. */
  plannedLoad: number | undefined
  /** Requests of the validation phase. */
  validationRequests: number
  /** Requests of the load. */
  loadRequests: number
  loadMs: number
  /** From the start of the load to its last answer. */
  loadElapsedMs: number
  elapsedMs: number
  interrupted: boolean
  /** False when interrupted: the final consistency checks did not run. */
  finalChecks: boolean
  maxInFlight: number
}

/** How long an interrupted run waits for answers still in flight before abandoning them. */
const interruptGraceMs = 2000

interface Run {
  options: EngineOptions
  scenario: ScenarioRun
  recorder: Recorder
  clock: () => number
  /** Aborts every request still in flight once the drain gives up. */
  abandon: AbortController
  inFlight: number
  maxInFlight: number
  sent: number
  /** Undefined during validation and setup. */
  loadStartMs: number | undefined
}

export async function runScenario(scenario: Scenario, options: EngineOptions): Promise<RunResult> {
  const origin = performance.now()
  const run: Run = {
    options,
    scenario: scenario.start(),
    recorder: options.recorder ?? new Recorder(),
    clock: () => performance.now() - origin,
    abandon: new AbortController(),
    inFlight: 0,
    maxInFlight: 0,
    sent: 0,
    loadStartMs: undefined
  }
  const random = seededRandom(options.seed)
  const phaseContext = context(run, random, (request) => oneShot(run, request))
  if (options.validate && run.scenario.validate && !options.signal.aborted) await run.scenario.validate(phaseContext)
  const validationRequests = run.sent
  if (run.scenario.setup && !options.signal.aborted) await run.scenario.setup(phaseContext)
  const loadMs = Math.max(0, ...options.streams.map((s) => durationMs(s.stages)))
  const loadStartMs = run.clock()
  run.loadStartMs = loadStartMs
  const ticker = setInterval(() => options.onProgress?.(progress(run, loadMs)), 1000)
  try {
    if (options.connections) await closedModel(run, random, options.connections, loadMs)
    else await openModel(run, random)
    await drain(run)
  } finally {
    clearInterval(ticker)
  }
  const loadElapsedMs = run.clock() - loadStartMs
  const interrupted = options.signal.aborted
  if (!interrupted && run.scenario.finish) {
    for (const failure of await run.scenario.finish(phaseContext)) run.recorder.inconsistency(failure)
  }
  return {
    model: options.connections ? 'closed' : 'open',
    recorder: run.recorder,
    plannedLoad: options.connections ? undefined : options.streams.reduce((n, s) => n + plannedUsers(s.stages), 0),
    validationRequests,
    loadRequests: run.sent - validationRequests,
    loadMs,
    loadElapsedMs,
    elapsedMs: run.clock(),
    interrupted,
    finalChecks: !interrupted && run.scenario.finish !== undefined,
    maxInFlight: run.maxInFlight
  }
}

function context(run: Run, random: Context['random'], http: Context['http']): Context {
  return {
    target: run.options.target,
    random,
    timeoutMs: run.options.timeoutMs,
    signal: run.options.signal,
    http,
    step: async (perform) => {
      const startedAt = begin(run)
      return settle(run, startedAt, await guarded(perform))
    },
    inconsistency: (name, detail) => run.recorder.inconsistency({ name, detail })
  }
}

function begin(run: Run, lagMs?: number): number {
  const now = run.clock()
  run.recorder.sent(now, lagMs)
  run.sent++
  run.inFlight++
  run.maxInFlight = Math.max(run.maxInFlight, run.inFlight)
  return now
}

/** Records one answer; latency counts from `fromMs`: the scheduled instant in the open model. */
function settle(run: Run, fromMs: number, outcome: Outcome): Outcome {
  run.inFlight--
  const now = run.clock()
  run.recorder.record({
    group: outcome.group,
    ok: outcome.ok,
    reason: outcome.ok ? undefined : outcome.reason,
    detail: outcome.ok ? undefined : outcome.detail,
    latencyMs: now - fromMs,
    atMs: now
  })
  return outcome
}

/** A scenario that throws has a bug, but one request's bug must not stop the run: a KO it is. */
async function guarded(perform: () => Promise<Outcome>, group = 'scenario'): Promise<Outcome> {
  try {
    return await perform()
  } catch (error) {
    return {
      group,
      ok: false,
      reason: 'scenario error',
      detail: error instanceof Error ? error.message : String(error)
    }
  }
}

/** Every arrival sent at its instant whatever the server does; latency counts from that instant. */
async function openModel(run: Run, random: Context['random']) {
  const ctx = context(run, random, (request) => oneShot(run, request))
  const loadStart = run.loadStartMs ?? run.clock()
  await drive(
    run.options.streams,
    () => run.clock() - loadStart,
    (stream, dueMs) => {
      const due = loadStart + dueMs
      begin(run, run.clock() - due)
      void guarded(() => run.scenario.request(stream, ctx), stream).then((outcome) => settle(run, due, outcome))
    },
    run.options.signal
  )
}

/** `connections` workers, each on its own kept-alive connection, sending back to back for `loadMs`. */
async function closedModel(run: Run, random: Context['random'], connections: number, loadMs: number) {
  const weights = run.options.streams.map(finalRate)
  const totalWeight = weights.reduce((a, b) => a + b, 0)
  const pick = (): string => {
    let x = random.next() * totalWeight
    for (let i = 0; i < weights.length; i++) {
      x -= weights[i]
      if (x < 0) return run.options.streams[i].name
    }
    return run.options.streams.at(-1)!.name
  }
  const worker = async () => {
    const client = new Client(run.options.target, { pipelining: 1, keepAliveTimeout: 60_000 })
    const ctx = context(run, random, (request) => send(run, client, request))
    try {
      const loadStart = run.loadStartMs ?? run.clock()
      while (run.clock() - loadStart < loadMs && !run.options.signal.aborted) {
        const stream = pick()
        const startedAt = begin(run)
        settle(run, startedAt, await guarded(() => run.scenario.request(stream, ctx), stream))
      }
    } finally {
      await client.destroy().catch(() => undefined)
    }
  }
  await Promise.all(Array.from({ length: connections }, worker))
}

/** Requests still in flight get their timeout to finish (a moment when interrupted), then are abandoned. */
async function drain(run: Run) {
  const graceMs = () => (run.options.signal.aborted ? interruptGraceMs : run.options.timeoutMs + 1000)
  const started = run.clock()
  while (run.inFlight > 0 && run.clock() - started < graceMs()) await sleep(10)
  if (run.inFlight === 0) return
  run.abandon.abort()
  for (const deadline = run.clock() + 1000; run.inFlight > 0 && run.clock() < deadline;) await sleep(10)
}

function progress(run: Run, loadMs: number): Progress {
  const seconds = run.recorder.seconds
  const last = seconds[Math.floor(run.clock() / 1000) - 1]
  const { ko } = run.recorder.total()
  return {
    elapsedMs: run.clock(),
    loadMs,
    loadElapsedMs: run.loadStartMs === undefined ? undefined : run.clock() - run.loadStartMs,
    perS: last ? last.ok + last.ko : 0,
    p99Ms: last ? last.latency.quantile(0.99) : 0,
    errors: ko + run.recorder.failureCount,
    inFlight: run.inFlight,
    sent: run.sent
  }
}

/** Gatling's default: a virtual user opens a connection of its own, closed when it is done. */
async function oneShot(run: Run, request: HttpRequest): Promise<Reply> {
  const client = new Client(run.options.target, { pipelining: 1 })
  try {
    return await send(run, client, request)
  } finally {
    void client.destroy().catch(() => undefined)
  }
}

async function send(run: Run, client: Client, request: HttpRequest): Promise<Reply> {
  const timeout = AbortSignal.timeout(run.options.timeoutMs)
  try {
    const response = await client.request({
      method: request.method,
      path: request.path,
      headers: request.headers,
      body: request.body,
      signal: AbortSignal.any([timeout, run.abandon.signal]),
      headersTimeout: 0,
      bodyTimeout: 0
    })
    const text = await response.body.text()
    return { status: response.statusCode, headers: response.headers, body: parseJson(text), text }
  } catch (error) {
    if (timeout.aborted) return { error: 'timeout', message: `no full answer within ${run.options.timeoutMs} ms` }
    const { code, message } = error as { code?: string; message?: string }
    return { error: 'network', message: `${code ?? ''} ${message ?? String(error)}`.trim() }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

export interface FindMaxOptions extends Omit<EngineOptions, 'streams' | 'validate' | 'recorder' | 'connections'> {
  /** The scenario's streams, scaled: each step holds their final rates × the step's multiplier. */
  streams: ArrivalStream[]
  slaMs: number
  stepS: number
}

export const findMaxMultipliers = [1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32]

/**
 * Constant-rate steps at ×1, ×1.5, ×2 … the scenario's rate until one misses the SLA (p99), gets a
 * KO or shows an inconsistency. Each step is a fresh run of the scenario (setup, load, final checks)
 * without its validation phase; one recorder follows the whole staircase for the charts.
 *
 * A warm-up comes first, one step long and not judged: a ramp from a tenth of ×1 to ×1. Started cold
 * at full rate, the first step measured the target's start-up (JIT compilation, pool connections
 * opening) and not its capacity: Tandem and the minimal baseline both failed ×1 that way with a
 * p99 over 500 ms, at a rate each held with a p99 of about 20 ms once warm. Its KOs are not judged;
 * an inconsistency in it still fails the run.
 */
export async function findMax(
  scenario: Scenario,
  options: FindMaxOptions
): Promise<{ result: RunResult; findMax: FindMaxFigures }> {
  const timeline = new Recorder()
  const steps: FindMaxStep[] = []
  const results: RunResult[] = []
  let offsetMs = 0
  const warmUp = await runScenario(scenario, {
    ...options,
    seed: options.seed + findMaxMultipliers.length,
    streams: options.streams.map((s) => ({
      name: s.name,
      stages: [{ kind: 'ramp' as const, from: finalRate(s) / 10, to: finalRate(s), durationS: options.stepS }]
    })),
    validate: false,
    recorder: new Recorder(timeline, offsetMs)
  })
  offsetMs += warmUp.elapsedMs
  results.push(warmUp)
  for (const [index, multiplier] of findMaxMultipliers.entries()) {
    if (options.signal.aborted) break
    const streams = options.streams.map((s) => ({
      name: s.name,
      stages: [{ kind: 'constant' as const, rate: finalRate(s) * multiplier, durationS: options.stepS }]
    }))
    const recorder = new Recorder(timeline, offsetMs)
    const result = await runScenario(scenario, {
      ...options,
      seed: options.seed + index,
      streams,
      validate: false,
      recorder
    })
    offsetMs += result.elapsedMs
    results.push(result)
    const step = judgeStep(result, multiplier, streams, options)
    steps.push(step)
    if (!step.held) break
  }
  const held = steps.filter((s) => s.held)
  return {
    result: {
      model: 'open',
      recorder: timeline,
      plannedLoad: results.reduce((n, r) => n + (r.plannedLoad ?? 0), 0),
      validationRequests: 0,
      loadRequests: results.reduce((n, r) => n + r.loadRequests, 0),
      loadMs: results.reduce((n, r) => n + r.loadMs, 0),
      loadElapsedMs: results.reduce((n, r) => n + r.loadElapsedMs, 0),
      elapsedMs: offsetMs,
      interrupted: options.signal.aborted,
      finalChecks: results.every((r) => r.finalChecks),
      maxInFlight: Math.max(0, ...results.map((r) => r.maxInFlight))
    },
    findMax: {
      slaMs: options.slaMs,
      warmUp: { durationS: options.stepS, requests: warmUp.loadRequests, ko: warmUp.recorder.total().ko },
      steps,
      maxHeldPerS: held.at(-1)?.ratePerS ?? 0
    }
  }
}

function judgeStep(
  result: RunResult,
  multiplier: number,
  streams: ArrivalStream[],
  options: FindMaxOptions
): FindMaxStep {
  const { ko } = result.recorder.total()
  const inconsistencies = result.recorder.failureCount
  const p99Ms = round(result.recorder.overall.quantile(0.99))
  const verdict = result.interrupted
    ? 'interrupted'
    : ko > 0
      ? `${ko} KO`
      : inconsistencies > 0
        ? `${inconsistencies} inconsistencies`
        : p99Ms > options.slaMs
          ? `p99 ${p99Ms} ms > ${options.slaMs} ms`
          : 'held'
  return {
    multiplier,
    ratePerS: round(streams.reduce((sum, s) => sum + finalRate(s), 0)),
    durationS: options.stepS,
    requests: result.loadRequests,
    ko,
    inconsistencies,
    p99Ms,
    held: verdict === 'held',
    verdict
  }
}
