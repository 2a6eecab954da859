/**
 * A grown database for the "cost as data grows" runs: stored transactions, increment keys and
 * attendance sheets put straight into Tandem's tables (after its migrations, before the load), then
 * vacuumed, analyzed and checkpointed, as a database that grew over months would be.
 *
 * The transactions come in pairs of a credit and a debit of the same value for the same client,
 * older than anything the load writes: every balance stays 0, so the Rinha validation phase and its
 * final balance checks hold as on a fresh database, while every statement and every debit works
 * against the large table and index.
 */
import postgres from 'postgres'
import { publicIdAlphabet } from '../src/modules/attendance/schema.js'

export interface Growth {
  transactions: number
  incrementKeys: number
  sheets: number
}

/** The volumes issue 14 names: 10 M transactions, 1 M increment keys, 100 k sheets. */
export const fullGrowth: Growth = { transactions: 10_000_000, incrementKeys: 1_000_000, sheets: 100_000 }

/** Rows per insert statement: each is its own transaction, so WAL and locks stay bounded. */
const chunkRows = 500_000
/** Teachers the sheets belong to (the attendance scenario's teachers are others: their own lists stay short). */
const teachers = 1000

export function scaledGrowth(factor: number): Growth {
  return {
    transactions: 2 * Math.round((fullGrowth.transactions * factor) / 2),
    incrementKeys: Math.round(fullGrowth.incrementKeys * factor),
    sheets: Math.round(fullGrowth.sheets * factor)
  }
}

export interface Grown {
  seconds: number
  /** pg_total_relation_size of each grown table (heap + indexes + TOAST), MB. */
  sizesMb: Record<string, number>
}

async function inChunks(
  total: number,
  log: (line: string) => void,
  what: string,
  insert: (from: number, to: number) => Promise<unknown>
) {
  for (let from = 0; from < total; from += chunkRows) {
    const to = Math.min(total, from + chunkRows)
    await insert(from, to)
    log(`  ${what}: ${to.toLocaleString('en')} of ${total.toLocaleString('en')}`)
  }
}

export async function grow(databaseUrl: string, growth: Growth, log: (line: string) => void): Promise<Grown> {
  const started = performance.now()
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} })
  try {
    await inChunks(
      growth.transactions,
      log,
      'transactions',
      (from, to) => sql`
      insert into transacoes (cliente_id, valor, tipo, descricao, realizada_em)
      select 1 + (g / 2) % 5, 1 + (g / 2) % 10000, case when g % 2 = 0 then 'c' else 'd' end, 'antiga',
             now() - interval '30 days' + g * interval '100 microseconds'
        from generate_series(${from}::bigint, ${to - 1}::bigint) g`
    )
    await inChunks(
      growth.incrementKeys,
      log,
      'increment keys',
      (from, to) => sql`
      insert into increments (key, value, updated_at)
      select 'grown:' || g, g % 1000, now() - interval '30 days'
        from generate_series(${from}::bigint, ${to - 1}::bigint) g`
    )
    if (growth.sheets > 0) {
      await sql`
        insert into users (email, password_hash, first_name, last_name)
        select 'grown-teacher-' || t || '@bench.test', '!', 'Grown', 'Teacher' || t
          from generate_series(1, ${teachers}) t
        on conflict (email) do nothing`
      const digit = (k: number) =>
        sql.unsafe(
          `substr('${publicIdAlphabet}', ((g / ${publicIdAlphabet.length ** k}) % ${publicIdAlphabet.length})::int + 1, 1)`
        )
      await inChunks(
        growth.sheets,
        log,
        'sheets',
        (from, to) => sql`
        insert into attendance_sheets (public_id, creator_id, course_unit_id, summary, is_active, created_at)
        select ${digit(5)} || ${digit(4)} || ${digit(3)} || ${digit(2)} || ${digit(1)} || ${digit(0)},
               u.id, (g % 4)::int, 'aula ' || g, false, now() - interval '30 days' + g * interval '1 second'
          from generate_series(${from}::bigint, ${to - 1}::bigint) g
          join (select id, row_number() over (order by id) - 1 as n
                  from users where email like 'grown-teacher-%@bench.test') u on u.n = g % ${teachers}`
      )
    }
    log('  vacuum analyze, checkpoint')
    await sql`vacuum analyze transacoes, increments, attendance_sheets, users`
    await sql`checkpoint`
    const sizes = await sql<Array<{ name: string; mb: number }>>`
      select relname as name, round(pg_total_relation_size(oid) / 1048576.0)::int as mb
        from pg_class where relname in ('transacoes', 'increments', 'attendance_sheets')`
    return {
      seconds: Math.round((performance.now() - started) / 100) / 10,
      sizesMb: Object.fromEntries(sizes.map((row) => [row.name, row.mb]))
    }
  } finally {
    await sql.end({ timeout: 5 })
  }
}
