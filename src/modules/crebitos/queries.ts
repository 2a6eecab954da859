import type { Queryable, Sql } from '../../db/pool.js'
import type { NewTransaction } from './schema.js'

/**
 * One statement, one round trip. The UPDATE's row lock orders concurrent requests from every
 * replica; under READ COMMITTED its WHERE is re-checked against the newest row version, so a debit
 * can never take the balance below -limite. No row: unknown client. `saldo` null: refused.
 */
export async function applyTransaction(sql: Queryable, clientId: number, t: NewTransaction) {
  const delta = t.tipo === 'c' ? t.valor : -t.valor
  const [row] = await sql<{ limite: number; saldo: number | null }[]>`
    with moved as (
      update clientes set saldo = saldo + ${delta}
       where id = ${clientId} and saldo + ${delta} >= -limite
      returning saldo
    ), logged as (
      insert into transacoes (cliente_id, valor, tipo, descricao)
      select ${clientId}, ${t.valor}, ${t.tipo}, ${t.descricao} from moved
    )
    select c.limite, moved.saldo from clientes c left join moved on true
     where c.id = ${clientId}`
  return row
}

/** What became of one item of a batch: its balance after, or why it was not applied. */
export type BatchOutcome = { saldo: number } | { refused: 'limit' | 'alone' }

/**
 * Several transactions of one client, in order, in one statement and one commit (the function of
 * migration 011: one row lock, one balance update, one multi-row insert). Undefined: unknown client.
 */
export async function applyBatch(sql: Queryable, clientId: number, items: readonly NewTransaction[]) {
  const [row] = await sql<{ limite: number; saldos: number[]; refusals: Array<0 | 1 | 2> }[]>`
    select limite, saldos, refusals from crebitos_apply(
      ${clientId}, ${items.map((t) => t.valor)}::integer[], ${items.map((t) => t.tipo)}::text[],
      ${items.map((t) => t.descricao)}::text[])`
  if (!row) return undefined
  const outcomes = items.map((_, i): BatchOutcome => {
    const refused = row.refusals[i]
    return refused === 0 ? { saldo: row.saldos[i] } : { refused: refused === 1 ? 'limit' : 'alone' }
  })
  return { limite: row.limite, outcomes }
}

/**
 * Balance and the newest ten from one statement, hence one snapshot. PostgreSQL hands back the JSON
 * of the answer, in the shape of `Statement`, as text: parsing it here only to serialize it again
 * was a tenth of the route's CPU.
 */
export async function readStatement(sql: Sql, clientId: number): Promise<string | undefined> {
  const [row] = await sql<{ statement: string }[]>`
    select json_build_object(
      'saldo', json_build_object(
        'total', c.saldo,
        'data_extrato', to_char(statement_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'limite', c.limite),
      'ultimas_transacoes', coalesce((
        select json_agg(json_build_object(
                 'valor', t.valor, 'tipo', t.tipo, 'descricao', t.descricao,
                 'realizada_em', to_char(t.realizada_em at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
               order by t.id desc)
          from (select * from transacoes where cliente_id = c.id order by id desc limit 10) t
      ), '[]'::json)
    )::text as statement
      from clientes c
     where c.id = ${clientId}`
  return row?.statement
}
