/**
 * What a load-test scenario provides. The engine owns time (arrivals, the open or closed model),
 * connections and figures; a scenario owns what one request is and what its answers must satisfy.
 *
 * A run goes: `scenario.start()` (fresh state), `validate` (fixed requests, Gatling's validation
 * phase), `setup` (e.g. read balances), the load (one `request` per arrival), then `finish`.
 */

/** One stage of an arrival stream, in Gatling's open-injection terms. */
export type Stage =
  /** `rampUsersPerSec(from).to(to).during(durationS)` */
  | { kind: 'ramp'; from: number; to: number; durationS: number }
  /** `constantUsersPerSec(rate).during(durationS)` */
  | { kind: 'constant'; rate: number; durationS: number }

/** The usual shape: a linear ramp from `from` to `rate` over `rampS`, then `rate` held for `holdS`. */
export function rampThenHold(rate: number, rampS: number, holdS: number, from = 0): Stage[] {
  return [
    { kind: 'ramp', from, to: rate, durationS: rampS },
    { kind: 'constant', rate, durationS: holdS }
  ]
}

/**
 * Arrivals of one kind of request: each arrival is one virtual user sending one request. The engine
 * multiplies every rate by `--rate-scale` and every duration by `--time-scale`.
 */
export interface ArrivalStream {
  /** Passed to `ScenarioRun.request`; also the default group name in the report. */
  name: string
  stages: Stage[]
}

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  /** Path and query, from the target's root: `/clientes/1/extrato`. */
  path: string
  headers?: Record<string, string>
  /** Sent as is; a JSON body needs its `content-type` header. */
  body?: string
}

/** An HTTP answer (the body parsed as JSON when it is JSON, else undefined), or why there was none. */
export type Reply =
  | { status: number; headers: Record<string, string | string[] | undefined>; body: unknown; text: string }
  | { error: 'timeout' | 'network'; message: string }

/** What a request came to: ok, or KO with a short stable reason (`status 500`, `saldo < -limite`, `timeout`). */
export type Outcome = { group: string; ok: true } | { group: string; ok: false; reason: string; detail?: string }

/** Deterministic under `--seed`: every random choice of a scenario comes from here. */
export interface Random {
  /** A float in [0, 1). */
  next(): number
  /** An integer in [min, max], both included. */
  int(min: number, max: number): number
  /** `length` characters of [a-zA-Z0-9]. */
  alphanumeric(length: number): string
}

export interface Context {
  /** The target's origin without a trailing slash: `http://127.0.0.1:9999`. */
  readonly target: string
  readonly random: Random
  readonly timeoutMs: number
  /** Aborted on Ctrl-C: a long validation or setup should stop early. */
  readonly signal: AbortSignal
  /**
   * One request: on a connection of its own, closed after it (open model, Gatling's default of a
   * connection per virtual user), or on the worker's kept-alive connection (closed model).
   * Never throws: a timeout or a network error is a `Reply` too.
   */
  http(request: HttpRequest): Promise<Reply>
  /**
   * One request of the validation or setup phase, timed and counted in the report like the load's.
   * `run` does the HTTP request(s) through `http` and judges the answer.
   */
  step(run: () => Promise<Outcome>): Promise<Outcome>
  /** A consistency failure seen during the run (e.g. a statement contradicting earlier answers). */
  inconsistency(name: string, detail: string): void
}

/** A contradiction between answers (or between answers and the final state), not a single bad reply. */
export interface ConsistencyFailure {
  name: string
  detail: string
}

/** The state of one run: a fresh one per run, so `--find-max` can run the scenario step after step. */
export interface ScenarioRun {
  /** Gatling-style validation phase, before the load; skipped by `--find-max`. */
  validate?(ctx: Context): Promise<void>
  /** Just before the load (after validation): e.g. read the balances the final check starts from. */
  setup?(ctx: Context): Promise<void>
  /** One arrival of stream `stream`: performs one request through `ctx.http` and judges it. */
  request(stream: string, ctx: Context): Promise<Outcome>
  /** After the load: compares the final state with every acknowledged answer. */
  finish?(ctx: Context): Promise<ConsistencyFailure[]>
}

export interface Scenario {
  name: string
  /** One line for `--help`. */
  summary: string
  /** What the scenario checks, one line each, for `--help` and docs. */
  checks: string[]
  /** The arrival streams at scale 1. */
  streams: ArrivalStream[]
  start(): ScenarioRun
}
