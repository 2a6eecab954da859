/**
 * What a load's ledger is checked against: the rows in PostgreSQL. Every acknowledged write must be
 * there exactly once. `exact`: also nothing that was not acknowledged (the scenario gave every write a
 * final answer, or its fault could not have applied one silently); otherwise a write answered 503 or
 * not at all may have been applied (its commit's answer was lost with the fault) and is only counted.
 */
import type postgres from 'postgres'
import type { AttemptRecord, Load, WriteRecord } from './workload.js'
import { describe } from './transport.js'

export interface Verdict {
  /** Acknowledged writes looked up in the database. */
  checked: number
  /** Writes applied more than once (extra rows, or increments beyond their requests). */
  duplicates: number
  /** Acknowledged writes not in the database. */
  lost: number
  /** Writes in the database whose request got no acknowledgement (allowed only when not exact). */
  appliedUnacknowledged: number
  /** Intended writes with no final answer after every retry. */
  unresolved: number
  problems: string[]
}

export interface VerifyOptions {
  exact: boolean
  /** Balances before the load (`exact` compares each balance with it plus the acknowledged transactions). */
  balancesBefore?: Map<number, number>
  sheet: string
}

const signed = (write: WriteRecord) => (write.op === 'credit' ? write.valor! : -write.valor!)
const answer = (write: WriteRecord) =>
  `${describe(write.last)}${write.last.ok ? ` ${write.last.text.slice(0, 120)}` : ''}`

export async function verify(
  sql: postgres.Sql,
  load: Load,
  { exact, balancesBefore, sheet }: VerifyOptions
): Promise<Verdict> {
  const verdict: Verdict = { checked: 0, duplicates: 0, lost: 0, appliedUnacknowledged: 0, unresolved: 0, problems: [] }
  const problem = (text: string) => {
    if (verdict.problems.length < 40) verdict.problems.push(text)
  }
  for (const write of load.writes) {
    if (!write.acked && !write.refused) verdict.unresolved++
    if (write.acked) verdict.checked++
  }
  await verifyTransactions(sql, load, { exact, balancesBefore }, verdict, problem)
  await verifyIncrements(sql, load, exact, verdict, problem)
  await verifySignIns(sql, load, exact, sheet, verdict, problem)
  verifyCounter(load, verdict, problem)
  return verdict
}

async function verifyTransactions(
  sql: postgres.Sql,
  load: Load,
  { exact, balancesBefore }: Pick<VerifyOptions, 'exact' | 'balancesBefore'>,
  verdict: Verdict,
  problem: (text: string) => void
) {
  const tag = load.options.tag
  const rows = await sql<{ descricao: string; clienteId: number; valor: number; tipo: string; copies: number }[]>`
    select descricao, cliente_id as "clienteId", valor, tipo, count(*)::int as copies
      from transacoes where starts_with(descricao, ${tag}) group by 1, 2, 3, 4`
  const stored = new Map(rows.map((row) => [row.descricao, row]))
  const intended = new Set<string>()
  for (const write of load.writes) {
    if (write.op !== 'credit' && write.op !== 'debit') continue
    intended.add(write.descricao!)
    const row = stored.get(write.descricao!)
    if (row && row.copies > 1) {
      verdict.duplicates += row.copies - 1
      problem(
        `transaction ${write.descricao} stored ${row.copies} times (${write.attempts} attempts, last ${answer(write)})`
      )
    }
    if (
      row &&
      (row.clienteId !== write.clientId ||
        row.valor !== write.valor ||
        row.tipo !== (write.op === 'credit' ? 'c' : 'd'))
    ) {
      problem(
        `transaction ${write.descricao} stored as client ${row.clienteId} ${row.valor} ${row.tipo}, sent as client ${write.clientId} ${write.valor} ${write.op}`
      )
    }
    if (write.acked && !row) {
      verdict.lost++
      problem(
        `transaction ${write.descricao} (client ${write.clientId}, ${write.op} ${write.valor}) answered ${answer(write)} but is not stored`
      )
    }
    if (!write.acked && row) {
      verdict.appliedUnacknowledged++
      if (exact || write.refused)
        problem(
          `transaction ${write.descricao} is stored, but its final answer was ${answer(write)} after ${write.attempts} attempts`
        )
    }
  }
  for (const row of rows)
    if (!intended.has(row.descricao)) problem(`transaction ${row.descricao} stored, but this load never sent it`)

  const balances = await sql<{ id: number; saldo: number; sum: number }[]>`
    select c.id, c.saldo, coalesce(sum(case t.tipo when 'c' then t.valor else -t.valor end), 0)::int as sum
      from clientes c left join transacoes t on t.cliente_id = c.id group by c.id order by c.id`
  for (const { id, saldo, sum } of balances) {
    if (saldo !== sum) problem(`client ${id}: balance ${saldo} is not the sum of its stored transactions (${sum})`)
    if (exact && balancesBefore) {
      const expected =
        (balancesBefore.get(id) ?? 0) +
        load.writes
          .filter((write) => write.acked && write.clientId === id && (write.op === 'credit' || write.op === 'debit'))
          .reduce((total, write) => total + signed(write), 0)
      if (saldo !== expected)
        problem(`client ${id}: balance ${saldo}, but the acknowledged transactions add up to ${expected}`)
    }
  }
}

async function verifyIncrements(
  sql: postgres.Sql,
  load: Load,
  exact: boolean,
  verdict: Verdict,
  problem: (text: string) => void
) {
  // The load's keys, and any a scenario chose itself for one increment.
  const keys = [
    ...new Set([
      ...load.options.incrementKeys,
      ...load.writes.flatMap((write) => (write.incrementKey ? [write.incrementKey] : []))
    ])
  ]
  const rows = await sql<{ key: string; value: string }[]>`select key, value from increments where key in ${sql(keys)}`
  const stored = new Map(rows.map((row) => [row.key, Number(row.value)]))
  for (const key of keys) {
    const writes = load.writes.filter((write) => write.op === 'increment' && write.incrementKey === key)
    const acked = writes.filter((write) => write.acked)
    const unacknowledged = writes.filter((write) => !write.acked && !write.refused).length
    const value = stored.get(key) ?? 0
    // Each increment adds 1, so each committed one has a total of its own: two acknowledgements with
    // one total mean one of them was not really committed (or was rolled back after its answer).
    const totals = acked.map((write) => write.total!)
    const collisions = totals.length - new Set(totals).size
    if (collisions > 0) {
      verdict.lost += collisions
      problem(`increment key ${key}: ${collisions} acknowledged totals repeated`)
    }
    const highest = Math.max(0, ...totals)
    if (highest > value)
      problem(`increment key ${key}: an acknowledgement reported total ${highest}, the database holds ${value}`)
    if (value < acked.length) {
      verdict.lost += acked.length - value
      problem(`increment key ${key}: ${acked.length} acknowledged, the database holds ${value}`)
    }
    const extra = value - acked.length
    if (extra > 0) {
      verdict.appliedUnacknowledged += Math.min(extra, unacknowledged)
      if (extra > unacknowledged) verdict.duplicates += extra - unacknowledged
      if (exact || extra > unacknowledged) {
        problem(
          `increment key ${key}: the database holds ${value}, ${acked.length} acknowledged and ${unacknowledged} without a final answer`
        )
      }
    }
    if (exact && acked.length > 0 && highest !== acked.length)
      problem(`increment key ${key}: ${acked.length} acknowledged, but the highest total answered was ${highest}`)
  }
}

async function verifySignIns(
  sql: postgres.Sql,
  load: Load,
  exact: boolean,
  sheet: string,
  verdict: Verdict,
  problem: (text: string) => void
) {
  const signIns = load.writes.filter((write) => write.op === 'signIn')
  // The load's sheet, and any a scenario chose itself for one sign-in.
  const sheets = [...new Set([sheet, ...signIns.map((write) => write.sheet!)])]
  const rows = await sql<{ sheet: string; nmec: number }[]>`
    select s.public_id as sheet, r.nmec from registrations r join attendance_sheets s on s.id = r.sheet_id where s.public_id in ${sql(sheets)}`
  const stored = new Set(rows.map((row) => `${row.sheet}/${row.nmec}`))
  const intended = new Set<string>()
  for (const write of signIns) {
    const id = `${write.sheet}/${write.nmec}`
    intended.add(id)
    const present = stored.has(id)
    if (write.acked && !present) {
      verdict.lost++
      problem(`sign-in ${id} answered ${answer(write)} but is not on the sheet`)
    }
    if (!write.acked && present) {
      verdict.appliedUnacknowledged++
      // A fresh number answered 409 already-registered: an earlier attempt of the same request was
      // applied, and its retry applied it again (refused by the key) instead of replaying the 201.
      if (exact || write.refused)
        problem(
          `sign-in ${id} is on the sheet, but its final answer was ${answer(write)} after ${write.attempts} attempts`
        )
    }
  }
  // Numbers below the load's own are the scenario's (a probe before the load).
  const base = load.options.nmecBase ?? 1_000_000
  for (const row of rows) {
    if (row.nmec >= base && !intended.has(`${row.sheet}/${row.nmec}`))
      problem(`sign-in ${row.sheet}/${row.nmec} is on the sheet, but this load never sent it`)
  }
}

function verifyCounter(load: Load, verdict: Verdict, problem: (text: string) => void) {
  const seen = new Map<number, number>()
  for (const { value } of load.counter) seen.set(value, (seen.get(value) ?? 0) + 1)
  const repeated = [...seen].filter(([, n]) => n > 1)
  if (repeated.length > 0) {
    verdict.duplicates += repeated.reduce((total, [, n]) => total + n - 1, 0)
    problem(
      `counter: ${repeated.length} cluster numbers handed out more than once (${repeated
        .slice(0, 5)
        .map(([value, n]) => `${value}×${n}`)
        .join(', ')})`
    )
  }
}

export interface AnswerRules {
  /** The client-side bound: an answer slower than this counts as a hang. */
  boundMs: number
  /** Statuses allowed besides 503 (which must carry Retry-After and say `unavailable`). */
  allowed: number[]
  /** Whether a request may go unanswered (a killed replica resets its connections). */
  failuresAllowed?: (attempt: AttemptRecord) => boolean
  what: string
}

/** Every answer in time, of an allowed status, and every 503 a proper one; one line per kind of breach. */
export function judgeAnswers(
  attempts: AttemptRecord[],
  { boundMs, allowed, failuresAllowed = () => false, what }: AnswerRules
): string[] {
  const breaches = new Map<string, { count: number; example: string }>()
  const breach = (kind: string, attempt: AttemptRecord) => {
    const seen = breaches.get(kind) ?? { count: 0, example: '' }
    seen.count++
    const { outcome } = attempt
    seen.example ||= `${attempt.op} on ${attempt.target}: ${describe(outcome)} after ${outcome.ms} ms${outcome.ok ? ` ${outcome.text.slice(0, 160)}` : ''}`
    breaches.set(kind, seen)
  }
  for (const attempt of attempts) {
    const { outcome } = attempt
    if (!outcome.ok) {
      if (!failuresAllowed(attempt))
        breach(outcome.error === 'timeout' ? 'no answer within the bound' : `no answer (${outcome.error})`, attempt)
      continue
    }
    if (outcome.ms > boundMs) breach(`answered after the ${boundMs} ms bound`, attempt)
    if (outcome.status === 503) {
      if (!outcome.headers['retry-after']) breach('503 without Retry-After', attempt)
      if (outcome.body?.error !== 'unavailable') breach(`503 saying ${JSON.stringify(outcome.body?.error)}`, attempt)
    } else if (!allowed.includes(outcome.status)) {
      breach(`status ${outcome.status}`, attempt)
    }
  }
  return [...breaches].map(([kind, { count, example }]) => `${what}: ${kind} ×${count}, e.g. ${example}`)
}
