/* global process, Buffer */
// The comparison point for Tandem's crebitos routes: node:http + postgres.js and nothing else, the
// shape of the fastest public Node.js Rinha 2024/Q1 entries (crebitos.mjs: the routes, UNLOGGED=1).
// PORT as a replica takes it. GET /health answers 200, for the harness's readiness wait
// (bench/topology.ts).
import { createServer } from 'node:http'
import { extrato, transacao } from './crebitos.mjs'

const env = process.env
const json = (res, status, body) => {
  const text = body === undefined ? '' : JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text)
}
/** The body as JSON, or undefined (a 422 like any invalid body). */
function parse(text) {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
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
          ? transacao(id, parse(Buffer.concat(chunks).toString()))
          : Promise.resolve([404])
    answer.then(
      ([status, body]) => json(res, status, body),
      () => json(res, 500)
    )
  })
}).listen(Number(env.PORT ?? 9999), env.HOST ?? '127.0.0.1')
