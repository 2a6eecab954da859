/**
 * The public Rinha de Backend 2024/Q1 Gatling test (zanfranceschi/rinha-de-backend-2024-q1,
 * load-test/user-files/simulations/rinhabackend/RinhaBackendCrebitosSimulation.scala), request for
 * request and check for check, plus the ledger's stronger checks (rinha-ledger.ts).
 *
 * One deliberate difference: Gatling starts the load as soon as the 404 check answers, while the
 * five clients' validation chains may still run (and then race the load on their balances); here
 * the load waits for the chains too, so a validation verdict never depends on that race.
 */
import {
  type ConsistencyFailure,
  type Context,
  type HttpRequest,
  type Outcome,
  type Reply,
  type Scenario,
  type ScenarioRun,
  rampThenHold
} from '../scenario.js'
import { clientLimits, isBalance, Ledger, type Ticket } from './rinha-ledger.js'

type Answer = Extract<Reply, { status: number }>
/** One Gatling check: undefined when it holds, else why not. */
type Check = (answer: Answer) => string | undefined

const userAgent = 'Agente do Caos - 2024/Q1'
const concurrentValidations = 25
const validationGroup = 'validações'
const phaseS = 120

function transaction(id: number, body: string): HttpRequest {
  return {
    method: 'POST',
    path: `/clientes/${id}/transacoes`,
    headers: { 'content-type': 'application/json', 'user-agent': userAgent },
    body
  }
}

function statement(id: number): HttpRequest {
  return { method: 'GET', path: `/clientes/${id}/extrato`, headers: { 'user-agent': userAgent } }
}

const payload = (valor: number | string, tipo: string, descricao: string | null) =>
  `{"valor": ${valor}, "tipo": "${tipo}", "descricao": ${JSON.stringify(descricao)}}`

/** jmesPath: a value inside the JSON body, undefined when absent. */
function at(body: unknown, ...path: Array<string | number>): unknown {
  let value = body
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined
    value = (value as Record<string | number, unknown>)[key]
  }
  return value
}

const statusIn =
  (...codes: number[]): Check =>
  (a) =>
    codes.includes(a.status) ? undefined : `status ${a.status}, expected ${codes.join(' or ')}`

/** Gatling adds this check to a request that has no status check of its own. */
const defaultStatus: Check = (a) =>
  (a.status >= 200 && a.status <= 209) || a.status === 304 ? undefined : `status ${a.status}, expected 2xx`

/** `jmesPath(path).is(expected)`, compared as text the way `ofType[String]` reads numbers. */
const is =
  (expected: string | number, ...path: Array<string | number>): Check =>
  (a) => {
    const value = at(a.body, ...path)
    if (value === undefined || value === null) return `${path.join('.')} missing`
    return String(value) === String(expected)
      ? undefined
      : `${path.join('.')} is ${String(value)}, expected ${expected}`
  }

/** validarConsistenciaSaldoLimite: saldo >= -limite, both integers. */
const withinLimit =
  (saldoPath: string[], limitePath: string[]): Check =>
  (a) => {
    const saldo = at(a.body, ...saldoPath)
    const limite = at(a.body, ...limitePath)
    if (!Number.isInteger(saldo) || !Number.isInteger(limite)) return `${saldoPath.join('.')} or limite missing`
    return (saldo as number) < -(limite as number) ? 'saldo < -limite' : undefined
  }

/** `jmesPath(path).saveAs(...)`: fails when the value is absent. */
const present =
  (...path: string[]): Check =>
  (a) => {
    const value = at(a.body, ...path)
    return value === undefined || value === null ? `${path.join('.')} missing` : undefined
  }

const onlyIf =
  (status: number, check: Check): Check =>
  (a) =>
    a.status === status ? check(a) : undefined

function judge(group: string, reply: Reply, checks: Check[]): Outcome {
  if ('error' in reply) return { group, ok: false, reason: reply.error, detail: reply.message }
  for (const check of checks) {
    const failed = check(reply)
    if (failed)
      return { group, ok: false, reason: failed.replace(/ is .*, expected/, ' wrong, expected'), detail: failed }
  }
  return { group, ok: true }
}

const transactionChecks = [statusIn(200), withinLimit(['saldo'], ['limite'])]

function start(): ScenarioRun {
  const pending: ConsistencyFailure[] = []
  const ledger = new Ledger((name, detail) => pending.push({ name, detail }))
  const flush = (ctx: Context) => {
    for (const { name, detail } of pending.splice(0)) ctx.inconsistency(name, detail)
  }

  async function post(ctx: Context, group: string, tipo: 'c' | 'd', checks: Check[]): Promise<Outcome> {
    const id = ctx.random.int(1, clientLimits.size)
    const valor = ctx.random.int(1, 10000)
    const ticket = ledger.begin(id, tipo, valor)
    const reply = await ctx.http(transaction(id, payload(valor, tipo, ctx.random.alphanumeric(10))))
    settle(ticket, reply)
    flush(ctx)
    return judge(group, reply, checks)
  }

  function settle(ticket: Ticket, reply: Reply) {
    if ('error' in reply) return ledger.unknown(ticket)
    if (reply.status === 200 && isBalance(reply.body)) return ledger.accepted(ticket, reply.body)
    // The contract's only 422 for a well-formed body: a debit past the limit.
    if (reply.status === 422 && ticket.tipo === 'd') return ledger.refused(ticket)
    ledger.unknown(ticket)
  }

  async function extrato(ctx: Context): Promise<Outcome> {
    const id = ctx.random.int(1, clientLimits.size)
    const reply = await ctx.http(statement(id))
    if (!('error' in reply) && reply.status === 200) ledger.statement(id, reply.body)
    flush(ctx)
    return judge('extratos', reply, [defaultStatus, withinLimit(['saldo', 'total'], ['saldo', 'limite'])])
  }

  return {
    validate,
    async setup(ctx) {
      for (const id of clientLimits.keys()) ledger.setBaseline(id, await readBalance(ctx, id))
    },
    request(stream, ctx) {
      if (stream === 'débitos')
        return post(ctx, stream, 'd', [statusIn(200, 422), onlyIf(200, withinLimit(['saldo'], ['limite']))])
      if (stream === 'créditos') return post(ctx, stream, 'c', transactionChecks)
      return extrato(ctx)
    },
    async finish(ctx) {
      for (const id of clientLimits.keys()) {
        const reply = await ctx.http(statement(id))
        ledger.final(id, 'error' in reply ? undefined : reply.body)
      }
      return pending.splice(0)
    }
  }
}

async function readBalance(ctx: Context, id: number): Promise<number> {
  const reply = await ctx.http(statement(id))
  const total = 'error' in reply ? undefined : at(reply.body, 'saldo', 'total')
  if (!Number.isInteger(total)) {
    const why = 'error' in reply ? reply.message : `${reply.status} ${reply.text.slice(0, 200)}`
    throw new Error(`GET ${ctx.target}/clientes/${id}/extrato failed: ${why}`)
  }
  return total as number
}

/** The simulation's setUp, before the load: each `andThen` waits for everything before it. */
async function validate(ctx: Context) {
  const check = (request: HttpRequest, checks: Check[]) =>
    ctx.step(async () => judge(validationGroup, await ctx.http(request), checks))
  const concurrently = (n: number, request: HttpRequest, checks: Check[]) =>
    Promise.all(Array.from({ length: n }, () => check(request, checks)))

  await concurrently(concurrentValidations, transaction(1, payload(1, 'd', 'validacao')), [statusIn(200)])
  await check(statement(1), [defaultStatus, is(-concurrentValidations, 'saldo', 'total')])
  await concurrently(concurrentValidations, transaction(1, payload(1, 'c', 'validacao')), [statusIn(200)])
  await check(statement(1), [defaultStatus, is(0, 'saldo', 'total')])
  await Promise.all([
    ...[...clientLimits].map(([id, limite]) => clientCriteria(ctx, check, id, limite)),
    check(statement(6), [statusIn(404)])
  ])
}

type CheckStep = (request: HttpRequest, checks: Check[]) => Promise<Outcome>

/** criteriosClientes: one virtual user per client, its requests one after the other. */
async function clientCriteria(ctx: Context, check: CheckStep, id: number, limite: number) {
  const latest = (n: number, descricao: string, tipo: string): Check[] => [
    is(descricao, 'ultimas_transacoes', n, 'descricao'),
    is(tipo, 'ultimas_transacoes', n, 'tipo'),
    is(1, 'ultimas_transacoes', n, 'valor')
  ]
  await check(statement(id), [statusIn(200), is(limite, 'saldo', 'limite'), is(0, 'saldo', 'total')])
  await check(transaction(id, payload(1, 'c', 'toma')), transactionChecks)
  await check(transaction(id, payload(1, 'd', 'devolve')), transactionChecks)
  await check(statement(id), [defaultStatus, ...latest(0, 'devolve', 'd'), ...latest(1, 'toma', 'c')])
  await statementConsistency(ctx, id)
  const invalid = statusIn(422, 400)
  await check(transaction(id, payload('1.2', 'd', 'devolve')), [invalid])
  await check(transaction(id, payload(1, 'x', 'devolve')), [invalid])
  await check(transaction(id, payload(1, 'c', '123456789 e mais um pouco')), [invalid])
  await check(transaction(id, payload(1, 'c', '')), [invalid])
  await check(transaction(id, payload(1, 'c', null)), [invalid])
}

/**
 * A credit "danada", then (Gatling `resources`) five simultaneous statements that must all show it
 * first, with the limite and the saldo its answer gave: read-your-writes across replicas.
 */
async function statementConsistency(ctx: Context, id: number) {
  let saved: { saldo: unknown; limite: unknown } | undefined
  const credited = await ctx.step(async () => {
    const reply = await ctx.http(transaction(id, payload(1, 'c', 'danada')))
    if (!('error' in reply)) saved = { saldo: at(reply.body, 'saldo'), limite: at(reply.body, 'limite') }
    return judge(validationGroup, reply, [statusIn(200), present('saldo'), present('limite')])
  })
  if (!credited.ok && !saved) return
  const expectSaved =
    (key: 'saldo' | 'limite', ...path: string[]): Check =>
    (a) =>
      saved?.[key] === undefined ? `no ${key} saved` : is(String(saved[key]), ...path)(a)
  await Promise.all(
    Array.from({ length: 5 }, () =>
      ctx.step(async () =>
        judge(validationGroup, await ctx.http(statement(id)), [
          defaultStatus,
          is('danada', 'ultimas_transacoes', 0, 'descricao'),
          is('c', 'ultimas_transacoes', 0, 'tipo'),
          is(1, 'ultimas_transacoes', 0, 'valor'),
          expectSaved('limite', 'saldo', 'limite'),
          expectSaved('saldo', 'saldo', 'total')
        ])
      )
    )
  )
}

export const rinha: Scenario = {
  name: 'rinha',
  summary: 'Rinha de Backend 2024/Q1: the public Gatling simulation (validations, then debits, credits, statements)',
  checks: [
    'validation: 25 concurrent debits of 1 on client 1 all 200, then its saldo.total is -25; 25 credits, then 0',
    'validation, per client 1-5: limite and saldo 0, a credit and a debit of 1 listed newest first, a credit "danada" seen by 5 simultaneous statements with the saldo it returned, 422/400 for 5 invalid bodies; 404 for client 6',
    'débitos: status 200 or 422; on 200 saldo >= -limite',
    'créditos: status 200 and saldo >= -limite',
    'extratos: status 2xx and saldo.total >= -saldo.limite',
    'consistency: the right limite, at most 10 statement lines newest first, no 422 for a debit that fit at the lowest possible balance',
    'consistency, at the end: each client saldo equals its balance before the load plus every acknowledged transaction'
  ],
  streams: [
    { name: 'débitos', stages: rampThenHold(220, phaseS, phaseS, 1) },
    { name: 'créditos', stages: rampThenHold(110, phaseS, phaseS, 1) },
    { name: 'extratos', stages: rampThenHold(10, phaseS, phaseS, 1) }
  ],
  start
}
