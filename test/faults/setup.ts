import type postgres from 'postgres'
import { signUp } from '../helpers/accounts.js'
import { request } from '../helpers/http.js'

export interface Fixtures {
  /** Bearer tokens of users of their own, for the increments. */
  tokens: string[]
  /** An open sheet of one of them, for the anonymous sign-ins. */
  sheet: string
}

/** Users (registered over the given replicas in turn) and one open sheet: what the load needs. */
export async function prepare(bases: string[], users = 2): Promise<Fixtures> {
  const accounts = []
  for (let i = 0; i < users; i++) accounts.push(await signUp(bases[i % bases.length]))
  const sheet = await request(bases[0], 'POST', '/api/attendance/sheet/new', {
    json: { courseUnit: 0, summary: 'faults' },
    headers: accounts[0].bearer
  })
  if (sheet.status !== 201) throw new Error(`creating a sheet: ${sheet.status} ${sheet.text}`)
  return { tokens: accounts.map((account) => account.token), sheet: sheet.body.attendanceId }
}

/** Every client's balance now, by id. */
export async function balances(sql: postgres.Sql): Promise<Map<number, number>> {
  const rows = await sql<{ id: number; saldo: number }[]>`select id, saldo from clientes`
  return new Map(rows.map((row) => [row.id, row.saldo]))
}
