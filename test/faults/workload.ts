/**
 * The mixed load every scenario runs: lanes that each send one request after another over every
 * module, and a ledger of what each intended write was finally answered, for the checks against
 * PostgreSQL afterwards (verify.ts).
 */
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { send, type Outcome, type Target } from './transport.js'

export type Op = 'credit' | 'debit' | 'increment' | 'signIn' | 'counter' | 'extrato'
export type WriteOp = 'credit' | 'debit' | 'increment' | 'signIn'

export const isWrite = (op: Op): op is WriteOp => op !== 'counter' && op !== 'extrato'

export interface AttemptRecord {
  op: Op
  target: string
  outcome: Outcome
  /** Not the request's first attempt. */
  retry: boolean
}

/** One intended write and the last answer it got (after any retries). */
export interface WriteRecord {
  op: WriteOp
  idempotencyKey?: string
  attempts: number
  last: Outcome
  /** The final answer says it is applied: 200 (crebitos, increments) or 201 (sign-ins). */
  acked: boolean
  /** The final answer is a refusal decided by the write itself (422 limit-exceeded, 409 already-registered): nothing applied. */
  refused: boolean
  /** Some answer carried `Idempotent-Replayed: true`. */
  replayed: boolean
  target: string
  /** When the first attempt went out and the final answer came (ms since the epoch). */
  startedAt: number
  finishedAt: number
  clientId?: number
  valor?: number
  descricao?: string
  incrementKey?: string
  /** The key's total the 200 reported (each increment adds 1, so every acknowledged one has its own). */
  total?: number
  sheet?: string
  nmec?: number
}

export interface CounterAnswer {
  value: number
  at: number
  target: string
}

/** What a scenario sets itself on one operation instead of the load's random choice. */
export interface Fixed {
  clientId?: number
  incrementKey?: string
  nmec?: number
}

export interface RetryPolicy {
  /** Where the next attempt goes, given where the last one went. */
  next(previous: Target): Target
  maxAttempts: number
}

export interface LoadOptions {
  /** One or two characters: every descricao this load writes starts with it (10 characters at most in all). */
  tag: string
  /** Where first attempts go, round-robin; asked each time, so a scenario can take a replica out. */
  targets: () => Target[]
  /** Relative weights of the operations. */
  mix: Partial<Record<Op, number>>
  /** Bearer tokens for the increments (each increment picks one). */
  tokens: string[]
  /** Public id of an open sheet for the anonymous sign-ins. */
  sheet: string
  incrementKeys: string[]
  /** The client-side bound on each answer: past it the request counts as hung. */
  timeoutMs: number
  lanes: number
  /** With a policy every write carries an Idempotency-Key and unanswered requests, 503s and 409 in-use are retried with it. */
  retry?: RetryPolicy
  /** Called once per intended write, as soon as its final answer is known. */
  onFinal?(record: WriteRecord): void
  /** The crebitos clients the load writes to and reads (default 1–5). */
  clients?: number[]
  /** First sign-in student number (distinct per load, so loads on one sheet never collide). */
  nmecBase?: number
}

const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)]
const between = (low: number, high: number) => low + Math.floor(Math.random() * (high - low + 1))

const retryable = (outcome: Outcome) =>
  !outcome.ok || outcome.status === 503 || (outcome.status === 409 && outcome.body?.error === 'idempotency-key-in-use')

export class Load {
  readonly attempts: AttemptRecord[] = []
  readonly writes: WriteRecord[] = []
  readonly counter: CounterAnswer[] = []
  retries = 0
  private sequence = 0
  private nmec: number
  private turn = 0
  private stopping = false
  private lanes: Promise<void>[] = []
  private readonly ops: Op[]

  constructor(readonly options: LoadOptions) {
    this.nmec = options.nmecBase ?? 1_000_000 // above any number a scenario signs in itself
    // A weight of n puts the operation n times in the wheel each lane draws from.
    this.ops = Object.entries(options.mix).flatMap(([op, weight]) =>
      Array.from({ length: weight ?? 0 }, () => op as Op)
    )
  }

  get requests() {
    return this.attempts.length
  }

  start() {
    this.lanes = Array.from({ length: this.options.lanes }, () => this.lane())
  }

  /** Lanes finish what they are doing (its retries included) and stop. */
  async stop() {
    this.stopping = true
    await Promise.all(this.lanes)
  }

  private async lane() {
    while (!this.stopping) {
      const targets = this.options.targets()
      await this.run(pick(this.ops), targets[this.turn++ % targets.length])
    }
  }

  /** One operation on `to` (with its retries under a policy); writes land in the ledger. */
  async run(op: Op, to: Target, fixed: Fixed = {}): Promise<WriteRecord | Outcome> {
    const { path, json, headers, record } = this.build(op, fixed)
    if (this.options.retry && record) headers['idempotency-key'] = record.idempotencyKey = randomUUID()
    let target = to
    let outcome: Outcome
    let attempts = 0
    let replayed = false
    const startedAt = Date.now()
    for (;;) {
      outcome = await send(target, {
        method: json === undefined ? 'GET' : 'POST',
        path,
        json,
        headers,
        timeoutMs: this.options.timeoutMs
      })
      this.attempts.push({ op, target: target.name, outcome, retry: attempts > 0 })
      attempts++
      if (outcome.ok && outcome.headers['idempotent-replayed'] === 'true') replayed = true
      if (!this.options.retry || !retryable(outcome) || attempts >= this.options.retry.maxAttempts) break
      this.retries++
      // A short backoff: long enough for a dying replica's connection to PostgreSQL to be noticed.
      await sleep(Math.min(25 * 2 ** attempts, 800))
      target = this.options.retry.next(target)
    }
    if (op === 'counter' && outcome.ok && outcome.status === 200) {
      this.counter.push({
        value: outcome.body.clusterRequests,
        at: outcome.startedAt + outcome.ms,
        target: target.name
      })
    }
    if (!record) return outcome
    const status = outcome.ok ? outcome.status : 0
    const done: WriteRecord = {
      ...record,
      attempts,
      last: outcome,
      acked: status === 200 || status === 201,
      refused:
        status >= 400 &&
        status < 500 &&
        !(status === 409 && outcome.ok && outcome.body?.error === 'idempotency-key-in-use'),
      replayed,
      target: target.name,
      startedAt,
      finishedAt: Date.now()
    }
    if (op === 'increment' && done.acked) done.total = outcome.ok ? outcome.body.value : undefined
    this.writes.push(done)
    this.options.onFinal?.(done)
    return done
  }

  private build(op: Op, fixed: Fixed) {
    const headers: Record<string, string> = {}
    const base = { attempts: 0, acked: false, refused: false, replayed: false, target: '', startedAt: 0, finishedAt: 0 }
    const clients = this.options.clients ?? [1, 2, 3, 4, 5]
    switch (op) {
      case 'credit':
      case 'debit': {
        const descricao = `${this.options.tag}${(this.sequence++).toString(36)}`
        // Credits anywhere; debits where an exact sum means something: small ones on the large
        // limits (never refused), large ones on client 2 (80000), which its credits sometimes cover.
        const debitable = clients.filter((id) => [2, 3, 4].includes(id))
        const clientId = fixed.clientId ?? (op === 'credit' || debitable.length === 0 ? pick(clients) : pick(debitable))
        const valor = op === 'debit' && clientId === 2 ? between(20_000, 60_000) : between(1, 10_000)
        const tipo = op === 'credit' ? 'c' : 'd'
        return {
          path: `/clientes/${clientId}/transacoes`,
          json: { valor, tipo, descricao },
          headers,
          record: { ...base, op, clientId, valor, descricao } as Omit<WriteRecord, 'last'>
        }
      }
      case 'increment': {
        const incrementKey = fixed.incrementKey ?? pick(this.options.incrementKeys)
        headers.authorization = `Bearer ${pick(this.options.tokens)}`
        return {
          path: '/increment',
          json: { key: incrementKey, value: 1 },
          headers,
          record: { ...base, op, incrementKey } as Omit<WriteRecord, 'last'>
        }
      }
      case 'signIn': {
        const nmec = fixed.nmec ?? this.nmec++
        const sheet = this.options.sheet
        return {
          path: `/api/attendance/sheet/${sheet}/student/registration`,
          json: { nmec, name: `Student ${nmec}` },
          headers,
          record: { ...base, op, sheet, nmec } as Omit<WriteRecord, 'last'>
        }
      }
      case 'counter':
        return { path: '/counter', json: undefined, headers, record: undefined }
      case 'extrato':
        return { path: `/clientes/${pick(clients)}/extrato`, json: undefined, headers, record: undefined }
    }
  }
}

/** The attempts whose time on the wire overlaps [from, to]: the ones that met the fault. */
export function during(attempts: AttemptRecord[], from: number, to: number): AttemptRecord[] {
  return attempts.filter(({ outcome }) => outcome.startedAt <= to && outcome.startedAt + outcome.ms >= from)
}

export const slowest = (attempts: AttemptRecord[]) =>
  attempts.reduce((max, { outcome }) => Math.max(max, outcome.ms), 0)

/** `200×812 503×40 ECONNRESET×3` */
export function statusCounts(attempts: AttemptRecord[]): string {
  const counts = new Map<string, number>()
  for (const { outcome } of attempts) {
    const key = outcome.ok ? String(outcome.status) : outcome.error
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return (
    [...counts]
      .sort((x, y) => y[1] - x[1])
      .map(([key, n]) => `${key}×${n}`)
      .join(' ') || 'none'
  )
}
