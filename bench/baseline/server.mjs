/* global process, URL, Buffer */
// The comparison point for Tandem's crebitos routes: node:http + postgres.js and nothing else, the
// shape of the fastest public Node.js Rinha 2024/Q1 entries. Same contract and SQL as Tandem
// (src/modules/crebitos); PORT and DATABASE_URL as a replica takes them. UNLOGGED=1 runs on its own
// schema whose tables are created UNLOGGED from Tandem's migration, as those entries run. GET /health
// answers 200, for the harness's readiness wait (bench/topology.ts).
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
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

const json = (res, status, body) => {
  const text = body === undefined ? '' : JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text)
}
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

async function transacao(id, body) {
  let t
  try {
    t = JSON.parse(body)
  } catch {
    return [422]
  }
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

async function extrato(id) {
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

const route = /^\/clientes\/([1-9][0-9]{0,8})\/(transacoes|extrato)$/
createServer((req, res) => {
  const match = route.exec(req.url)
  if (!match) return req.url === '/health' ? json(res, 200, { status: 'ok' }) : json(res, 404)
  const id = Number(match[1])
  const chunks = []
  req.on('data', (chunk) => chunks.push(chunk))
  req.on('end', () => {
    const answer =
      match[2] === 'extrato' && req.method === 'GET'
        ? extrato(id)
        : match[2] === 'transacoes' && req.method === 'POST'
          ? transacao(id, Buffer.concat(chunks).toString())
          : Promise.resolve([404])
    answer.then(
      ([status, body]) => json(res, status, body),
      () => json(res, 500)
    )
  })
}).listen(Number(env.PORT ?? 9999), env.HOST ?? '127.0.0.1')
