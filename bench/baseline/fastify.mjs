/* global process */
// The floor of a Fastify server on the crebitos routes: Fastify (no plugin, no hook, no logger) in front
// of the same routes as server.mjs (crebitos.mjs), so that server.mjs against this one is what Fastify
// itself costs, and this one against Tandem what Tandem adds. PORT as a replica takes it; GET /health
// answers 200 for the harness's readiness wait (bench/topology.ts).
import Fastify from 'fastify'
import { extrato, transacao } from './crebitos.mjs'

const env = process.env
const clientId = /^[1-9][0-9]{0,8}$/
const app = Fastify({ logger: false })

/** The route's [status, body?] as the answer; an id that is not a number names no client. */
const route = (run) => async (request, reply) => {
  const [status, body] = clientId.test(request.params.id) ? await run(Number(request.params.id), request) : [404]
  return reply.code(status).send(body)
}

app.post(
  '/clientes/:id/transacoes',
  route((id, request) => transacao(id, request.body))
)
app.get(
  '/clientes/:id/extrato',
  route((id) => extrato(id))
)
app.get('/health', async () => ({ status: 'ok' }))
// A body that is not JSON is invalid input, as server.mjs answers it.
app.setErrorHandler((error, _request, reply) => reply.code(error.statusCode >= 500 ? 500 : 422).send())
await app.listen({ port: Number(env.PORT ?? 9999), host: env.HOST ?? '127.0.0.1' })
