import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import fp from 'fastify-plugin'
import { Counter } from 'prom-client'
import type { Sql } from '../../db/pool.js'
import { ErrorBody, NotFound, Unprocessable } from '../../platform/errors.js'
import { idempotencyHeader } from '../../platform/idempotency.js'
import { applyTransaction, readStatement } from './queries.js'
import { ClientQueues } from './queues.js'
import { int4 } from '../../platform/validation.js'
import { Balance, ClientParams, NewTransaction, Statement } from './schema.js'

const json = 'application/json; charset=utf-8'

/** Rinha de Backend 2024/Q1: credits and debits with a limit, and the statement. */
const routes: FastifyPluginAsyncTypebox<{ sql: Sql; statementsPerClient: number }> = async (
  app,
  { sql, statementsPerClient }
) => {
  const outcomes = new Counter({
    name: 'tandem_crebitos_transactions_total',
    help: 'Credit and debit requests by outcome',
    labelNames: ['tipo', 'outcome'],
    registers: [app.metrics]
  })

  const queues = new ClientQueues(sql, statementsPerClient)

  /** The answer the contract gives an applied (or refused) transaction; throws the refusals. */
  function answer(row: { limite: number; saldo: number | null } | undefined | 0, transaction: NewTransaction) {
    const outcome = !row ? 'unknown-client' : row.saldo === null ? 'limit-exceeded' : 'accepted'
    outcomes.inc({ tipo: transaction.tipo, outcome })
    if (!row) throw new NotFound('client')
    if (row.saldo === null) throw new Unprocessable('limit-exceeded', 'the debit would take the balance below -limite')
    return { limite: row.limite, saldo: row.saldo }
  }

  app.post(
    '/clientes/:id/transacoes',
    {
      config: { idempotent: true },
      schema: {
        tags: ['crebitos'],
        summary: 'Credit or debit a client',
        params: ClientParams,
        body: NewTransaction,
        response: { 200: Balance, 404: ErrorBody, 409: ErrorBody }
      }
    },
    async (request, reply) => {
      const id = int4(request.params.id)
      // Without the header this is the Rinha path: one statement, shared with the client's other
      // transactions that arrived while its previous statement ran (queues.ts).
      if (request.headers[idempotencyHeader] === undefined)
        return answer(id && (await queues.apply(id, request.body)), request.body)
      if (!id) throw new NotFound('client')
      await app.idempotent(request, reply, {
        scope: `crebitos:${id}`,
        status: 200,
        write: async (tx) => answer(await applyTransaction(tx, id, request.body), request.body)
      })
      return reply
    }
  )

  app.get(
    '/clientes/:id/extrato',
    {
      schema: {
        tags: ['crebitos'],
        summary: "A client's balance and newest ten transactions",
        params: ClientParams,
        response: { 200: Statement, 404: ErrorBody }
      }
    },
    async (request, reply) => {
      const id = int4(request.params.id)
      const statement = id && (await readStatement(sql, id))
      if (!statement) throw new NotFound('client')
      // Already the JSON of `Statement`, built by PostgreSQL: a string with a JSON type is sent as it is.
      return reply.type(json).send(statement as unknown as Statement)
    }
  )
}

/**
 * Encapsulated (its hooks and decorators stay its own), and named with the platform plugins it needs:
 * Fastify refuses to start when one is missing or comes after it, rather than app.ts's line order
 * deciding silently (the error and session hooks, and the OpenAPI document, must see its routes).
 */
export const crebitosRoutes = fp(routes, {
  name: 'crebitos',
  dependencies: ['errors', 'docs', 'metrics', 'idempotency'],
  encapsulate: true
})
