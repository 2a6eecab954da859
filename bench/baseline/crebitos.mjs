/* global process, URL */
// The crebitos routes of the baselines (server.mjs on node:http, fastify.mjs on Fastify): postgres.js and
// the same contract and SQL as Tandem (src/modules/crebitos). DATABASE_URL as a replica takes it.
// UNLOGGED=1 runs on its own schema whose tables are created UNLOGGED from Tandem's migration, as the
// fastest public Node.js entries run. Each route answers [status, body?].
import { readFileSync } from 'node:fs'
import postgres from 'postgres'

const env = process.env
const unlogged = env.UNLOGGED === '1'
const sql = postgres(env.DATABASE_URL, {
  max: Number(env.DATABASE_POOL_MAX ?? 10),
  prepare: true,
  onnotice: () => {},
  connection: { TimeZone: 'UTC', ...(unlogged && { search_path: 'rinha_unlogged' }) }
})

if (unlogged) {
  // Made once per database: replicas starting together wait on the lock, and the later ones find it made.
  const migration = new URL('../../src/modules/crebitos/migrations/001_crebitos.sql', import.meta.url)
  const ddl = readFileSync(migration, 'utf8').replaceAll('create table', 'create unlogged table')
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(20240101)`
    const [made] = await tx`select 1 from pg_namespace where nspname = 'rinha_unlogged'`
    if (made) return
    await tx`create schema rinha_unlogged`
    await tx.unsafe(ddl)
  })
}

/** A transaction body as the contract allows it. */
const valid = (t) =>
  t !== null &&
  typeof t === 'object' &&
  Number.isInteger(t.valor) &&
  t.valor > 0 &&
  t.valor <= 2147483647 &&
  (t.tipo === 'c' || t.tipo === 'd') &&
  typeof t.descricao === 'string' &&
  t.descricao.length >= 1 &&
  t.descricao.length <= 10

export async function transacao(id, t) {
  if (!valid(t)) return [422]
  const delta = t.tipo === 'c' ? t.valor : -t.valor
  const [row] = await sql`
    with moved as (
      update clientes set saldo = saldo + ${delta} where id = ${id} and saldo + ${delta} >= -limite returning saldo
    ), logged as (
      insert into transacoes (cliente_id, valor, tipo, descricao) select ${id}, ${t.valor}, ${t.tipo}, ${t.descricao} from moved
    )
    select c.limite, moved.saldo from clientes c left join moved on true where c.id = ${id}`
  if (!row) return [404]
  if (row.saldo === null) return [422]
  return [200, { limite: row.limite, saldo: row.saldo }]
}

export async function extrato(id) {
  const rows = await sql`
    select c.saldo, c.limite, t.valor, t.tipo, t.descricao, t.realizada_em
      from clientes c left join lateral (
        select * from transacoes where cliente_id = c.id order by id desc limit 10) t on true
     where c.id = ${id}`
  if (rows.length === 0) return [404]
  const saldo = { total: rows[0].saldo, data_extrato: new Date().toISOString(), limite: rows[0].limite }
  const ultimas_transacoes =
    rows[0].valor === null
      ? []
      : rows.map(({ valor, tipo, descricao, realizada_em }) => ({
          valor,
          tipo,
          descricao,
          realizada_em: realizada_em.toISOString()
        }))
  return [200, { saldo, ultimas_transacoes }]
}
