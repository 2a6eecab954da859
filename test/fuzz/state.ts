/**
 * The observable state: every row of every table, as text, so that two snapshots can be compared
 * row by row and a difference named. Tables are found in the catalog, so one added later is covered.
 */
import type { Sql } from '../../src/db/pool.js'

/** Refused attempts legitimately book time in the rate limits. */
const volatileTables = new Set(['rate_limits'])

/**
 * Columns that legitimately move without a valid write: a session's last use (any authenticated
 * read), its count of wrong current passwords (a refused attempt books one, like a rate limit), and
 * the cluster counter, which every GET /counter advances and which is accounted for exactly apart.
 */
const volatileColumns: Record<string, Set<string>> = {
  sessions: new Set(['last_used_at', 'password_failures']),
  counters: new Set(['value'])
}

/**
 * Rows the replicas may delete by themselves at any time: sessions already dead (expired, or idle
 * past `sessionIdleMs`), which every replica prunes in the background.
 */
const liveRows = (sessionIdleMs: number): Record<string, string> => ({
  sessions: `expires_at > now() and last_used_at > now() - interval '${Math.floor(sessionIdleMs / 1000)} seconds'`
})

export type Snapshot = Map<string, Set<string>>

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`

export async function snapshot(sql: Sql, { sessionIdleMs }: { sessionIdleMs: number }): Promise<Snapshot> {
  const columns = await sql<{ table: string; column: string }[]>`
    select c.table_name as table, c.column_name as column
      from information_schema.columns c
      join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
     where c.table_schema = 'public' and t.table_type = 'BASE TABLE'
     order by c.table_name, c.ordinal_position`
  const byTable = new Map<string, string[]>()
  for (const { table, column } of columns) {
    if (volatileTables.has(table) || volatileColumns[table]?.has(column)) continue
    byTable.set(table, [...(byTable.get(table) ?? []), column])
  }
  const result: Snapshot = new Map()
  const filters = liveRows(sessionIdleMs)
  for (const [table, names] of byTable) {
    const where = filters[table] ? ` where ${filters[table]}` : ''
    const rows = await sql.unsafe<{ row: string }[]>(
      `select json_build_object(${names.map((name) => `'${name.replaceAll("'", "''")}', ${quote(name)}`).join(', ')})::text as row from ${quote(table)}${where}`
    )
    result.set(table, new Set(rows.map(({ row }) => row)))
  }
  return result
}

export interface TableChange {
  table: string
  added: string[]
  removed: string[]
}

/** Rows in one snapshot and not the other, by table (an updated row shows as one removed and one added). */
export function compare(before: Snapshot, after: Snapshot): TableChange[] {
  const tables = new Set([...before.keys(), ...after.keys()])
  const changes: TableChange[] = []
  for (const table of [...tables].sort()) {
    const old = before.get(table) ?? new Set<string>()
    const now = after.get(table) ?? new Set<string>()
    const added = [...now].filter((row) => !old.has(row))
    const removed = [...old].filter((row) => !now.has(row))
    if (added.length > 0 || removed.length > 0) changes.push({ table, added, removed })
  }
  return changes
}

export function rowCount(snap: Snapshot): number {
  return [...snap.values()].reduce((sum, rows) => sum + rows.size, 0)
}

/** The cluster counter as PostgreSQL holds it (the fuzz servers run without Redis). */
export async function counterValue(sql: Sql): Promise<number> {
  const [row] = await sql<{ value: string }[]>`select value from counters where name = 'requests'`
  return Number(row?.value ?? Number.NaN)
}
