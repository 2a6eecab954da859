import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { clientLimits, Findings, Ledger, type FinalBalance, type Ticket } from './checks.js'
import { drive, plannedArrivals, stream, type Profile } from './schedule.js'

export type Kind = 'debit' | 'credit' | 'statement'

/** Peak arrivals per second of the public Rinha 2024/Q1 Gatling simulation; every ramp starts at 1/s. */
const peakRates: Record<Kind, number> = { debit: 220, credit: 110, statement: 10 }
const phaseS = 120

export interface LoadOptions {
  url: string
  /** Multiplies every arrival rate. */
  rate: number
  /** Multiplies the ramp and the plateau (2 minutes each). */
  durationScale: number
  timeoutMs: number
  connections: number
  signal: AbortSignal
  progress?: (progress: Progress) => void
}

export interface Progress {
  elapsedS: number
  sent: number
  completed: number
  inFlight: number
  errors: number
}

const progressEveryMs = 10_000

export interface KindTally {
  /** ms from the scheduled send to the end of the response body, one per HTTP response. */
  latencies: number[]
  /** ms from the actual send: the server's share, without the driver's own delays. */
  serviceLatencies: number[]
  statuses: Record<string, number>
  /** Responses to requests scheduled during the plateau. */
  plateauResponses: number
}

export interface LoadResult {
  planned: number
  sent: number
  completed: number
  tallies: Record<Kind, KindTally>
  findings: Findings
  finalBalances: FinalBalance[]
  /** ms between an arrival's due time and its actual send. */
  lags: number[]
  /** When the worst lag happened, in ms from the start. */
  maxLagAtMs: number
  maxInFlight: number
  elapsedMs: number
  rampMs: number
  plateauMs: number
  driverCpuPercent: number
}

type Reply = { status: number; body: unknown; text: string } | { error: 'timeout' | 'network'; message: string }

interface Run {
  options: LoadOptions
  pool: Pool
  findings: Findings
  ledger: Ledger
  tallies: Record<Kind, KindTally>
  lags: number[]
  maxLag: number
  maxLagAtMs: number
  clock: () => number
  rampMs: number
  sent: number
  completed: number
  inFlight: number
  maxInFlight: number
}

export function profiles({ rate, durationScale }: Pick<LoadOptions, 'rate' | 'durationScale'>): Record<Kind, Profile> {
  const profile = (peak: number): Profile => ({
    from: rate,
    to: peak * rate,
    rampS: phaseS * durationScale,
    plateauS: phaseS * durationScale
  })
  return { debit: profile(peakRates.debit), credit: profile(peakRates.credit), statement: profile(peakRates.statement) }
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const pool = new Pool(options.url, {
    connections: options.connections,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs
  })
  try {
    return await measure(options, pool)
  } finally {
    await pool.destroy()
  }
}

async function measure(options: LoadOptions, pool: Pool): Promise<LoadResult> {
  const findings = new Findings()
  const ledger = new Ledger(findings)
  await readBaselines(pool, ledger, options.timeoutMs)
  const shapes = profiles(options)
  const origin = performance.now()
  const run: Run = {
    options,
    pool,
    findings,
    ledger,
    tallies: { debit: tally(), credit: tally(), statement: tally() },
    lags: [],
    maxLag: 0,
    maxLagAtMs: 0,
    clock: () => performance.now() - origin,
    rampMs: shapes.debit.rampS * 1000,
    sent: 0,
    completed: 0,
    inFlight: 0,
    maxInFlight: 0
  }
  const cpuBefore = process.cpuUsage()
  const streams = (Object.keys(shapes) as Kind[]).map((kind) => stream(kind, shapes[kind]))
  const ticker = setInterval(() => options.progress?.(progress(run)), progressEveryMs)
  try {
    await drive(streams, run.clock, (kind, dueMs) => fire(run, kind, dueMs), options.signal)
    await drain(run)
  } finally {
    clearInterval(ticker)
  }
  const elapsedMs = run.clock()
  const cpu = process.cpuUsage(cpuBefore)
  return {
    planned: Object.values(shapes).reduce((sum, p) => sum + plannedArrivals(p), 0),
    sent: run.sent,
    completed: run.completed,
    tallies: run.tallies,
    findings,
    finalBalances: options.signal.aborted ? [] : await readFinalBalances(pool, ledger, options.timeoutMs),
    lags: run.lags,
    maxLagAtMs: run.maxLagAtMs,
    maxInFlight: run.maxInFlight,
    elapsedMs,
    rampMs: run.rampMs,
    plateauMs: shapes.debit.plateauS * 1000,
    driverCpuPercent: ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100
  }
}

function progress(run: Run): Progress {
  const { sent, completed, inFlight } = run
  return { elapsedS: run.clock() / 1000, sent, completed, inFlight, errors: run.findings.errorCount() }
}

function tally(): KindTally {
  return { latencies: [], serviceLatencies: [], statuses: {}, plateauResponses: 0 }
}

/** Requests still in flight when the schedule ends get their timeout to finish, not longer. */
async function drain(run: Run) {
  for (const deadline = Date.now() + run.options.timeoutMs + 1000; run.inFlight > 0 && Date.now() < deadline;) {
    await sleep(20)
  }
}

function fire(run: Run, kind: Kind, dueMs: number) {
  const lag = run.clock() - dueMs
  if (lag > run.maxLag) {
    run.maxLag = lag
    run.maxLagAtMs = dueMs
  }
  run.lags.push(lag)
  run.sent++
  run.inFlight++
  run.maxInFlight = Math.max(run.maxInFlight, run.inFlight)
  const request = kind === 'statement' ? statement(run, dueMs) : transaction(run, kind, dueMs)
  void request.finally(() => {
    run.inFlight--
    run.completed++
  })
}

async function transaction(run: Run, kind: 'debit' | 'credit', dueMs: number) {
  const id = randomClient()
  const ticket = run.ledger.begin(id, kind === 'debit' ? 'd' : 'c', 1 + Math.floor(Math.random() * 10000))
  const body = JSON.stringify({ valor: ticket.valor, tipo: ticket.tipo, descricao: randomDescription() })
  const reply = await call(run, kind, dueMs, { method: 'POST', path: `/clientes/${id}/transacoes`, body })
  settleTransaction(run, ticket, reply)
}

function settleTransaction(run: Run, ticket: Ticket, reply: Reply) {
  if ('error' in reply) {
    run.findings.error(reply.error, `transacoes client ${ticket.id}: ${reply.message}`)
    return run.ledger.unknown(ticket)
  }
  if (reply.status === 200) return run.ledger.accepted(ticket, reply.body)
  // The contract's only 422 for a well-formed body: a debit past the limit.
  if (reply.status === 422 && ticket.tipo === 'd') return run.ledger.refused(ticket)
  run.findings.error(
    reply.status >= 500 ? 'server' : 'unexpected',
    `transacoes tipo ${ticket.tipo} client ${ticket.id}: ${reply.status} ${reply.text.slice(0, 200)}`
  )
  run.ledger.unknown(ticket)
}

async function statement(run: Run, dueMs: number) {
  const id = randomClient()
  const reply = await call(run, 'statement', dueMs, { method: 'GET', path: `/clientes/${id}/extrato` })
  if ('error' in reply) return run.findings.error(reply.error, `extrato client ${id}: ${reply.message}`)
  if (reply.status === 200) return run.ledger.statement(id, reply.body)
  run.findings.error(
    reply.status >= 500 ? 'server' : 'unexpected',
    `extrato client ${id}: ${reply.status} ${reply.text.slice(0, 200)}`
  )
}

interface Request {
  method: 'GET' | 'POST'
  path: string
  body?: string
}

/** One request whose latency and timeout both count from its scheduled time, not from its send. */
async function call(run: Run, kind: Kind, dueMs: number, request: Request): Promise<Reply> {
  const sentAt = run.clock()
  const reply = await send(run.pool, request, Math.max(1, Math.ceil(run.options.timeoutMs - (sentAt - dueMs))))
  const tallied = run.tallies[kind]
  const outcome = 'error' in reply ? reply.error : String(reply.status)
  tallied.statuses[outcome] = (tallied.statuses[outcome] ?? 0) + 1
  if ('error' in reply) return reply
  const doneAt = run.clock()
  tallied.latencies.push(doneAt - dueMs)
  tallied.serviceLatencies.push(doneAt - sentAt)
  if (dueMs >= run.rampMs) tallied.plateauResponses++
  return reply
}

async function send(pool: Pool, { method, path, body }: Request, timeoutMs: number): Promise<Reply> {
  const signal = AbortSignal.timeout(timeoutMs)
  try {
    const response = await pool.request({
      method,
      path,
      body,
      signal,
      headers: body ? { 'content-type': 'application/json' } : undefined
    })
    const text = await response.body.text()
    return { status: response.statusCode, body: parseJson(text), text }
  } catch (error) {
    const { code, message } = error as { code?: string; message?: string }
    return signal.aborted
      ? { error: 'timeout', message: `no full response within ${timeoutMs.toFixed(0)} ms` }
      : { error: 'network', message: `${code ?? ''} ${message ?? String(error)}`.trim() }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** Balances before the load, so the final check also holds on a database that has seen traffic. */
async function readBaselines(pool: Pool, ledger: Ledger, timeoutMs: number) {
  for (const id of clientLimits.keys()) {
    const body = await readStatement(pool, id, timeoutMs)
    ledger.setBaseline(id, body.saldo.total)
  }
}

async function readFinalBalances(pool: Pool, ledger: Ledger, timeoutMs: number): Promise<FinalBalance[]> {
  const balances: FinalBalance[] = []
  for (const id of clientLimits.keys()) {
    const body = await readStatement(pool, id, timeoutMs).catch(() => undefined)
    balances.push(ledger.final(id, body))
  }
  return balances
}

async function readStatement(pool: Pool, id: number, timeoutMs: number): Promise<{ saldo: { total: number } }> {
  const reply = await send(pool, { method: 'GET', path: `/clientes/${id}/extrato` }, timeoutMs)
  const body = 'error' in reply ? undefined : (reply.body as { saldo?: { total?: unknown } } | undefined)
  if (!Number.isInteger(body?.saldo?.total)) {
    throw new Error(
      `GET /clientes/${id}/extrato failed: ${'error' in reply ? reply.message : `${reply.status} ${reply.text}`}`
    )
  }
  return body as { saldo: { total: number } }
}

function randomClient(): number {
  return 1 + Math.floor(Math.random() * clientLimits.size)
}

const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'

function randomDescription(): string {
  let text = ''
  for (let i = 0; i < 10; i++) text += alphabet[Math.floor(Math.random() * alphabet.length)]
  return text
}
