import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { isClientDataError, isTimeout, isUnavailable, sqlState } from '../db/pool.js'
import { isRedisUnavailable } from '../db/redis.js'

/** The body of every error response, for the route schemas (and so the OpenAPI document). */
export const ErrorBody = Type.Object({
  error: Type.String({ description: 'a stable machine-readable code' }),
  message: Type.String(),
  details: Type.Optional(Type.Array(Type.String(), { description: 'one "field: reason" per invalid field' }))
})

/** The JSON body of every error answer, as `ErrorBody` describes it. */
export function errorBody(code: string, message: string, details?: string[]): Record<string, unknown> {
  return details ? { error: code, message, details } : { error: code, message }
}

/**
 * An error with an HTTP status and a stable machine-readable code, rendered as `{ error, message, details? }`.
 * An answer, not a fault: no stack is captured (none is ever shown or logged). A refused Rinha debit
 * is one; made 20 frames deep, one cost 5.6 µs with its stack and 0.4 µs without.
 */
export class HttpError extends Error {
  readonly statusCode: number
  readonly code: string
  readonly details?: string[]

  constructor(statusCode: number, code: string, message: string, details?: string[]) {
    const stackFrames = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message)
    Error.stackTraceLimit = stackFrames
    this.statusCode = statusCode
    this.code = code
    this.details = details
  }
}

export class NotFound extends HttpError {
  constructor(what: string) {
    super(404, 'not-found', `${what} not found`)
  }
}

export class Unprocessable extends HttpError {
  constructor(code: string, message: string, details?: string[]) {
    super(422, code, message, details)
  }
}

/** Input the schema let through but a rule beyond it refused: one "field: reason" per field, like a schema failure. */
export class InvalidInput extends Unprocessable {
  constructor(details: string[]) {
    super('invalid-input', 'invalid body', details)
  }
}

export class Conflict extends HttpError {
  constructor(code: string, message: string) {
    super(409, code, message)
  }
}

export class Unauthorized extends HttpError {
  constructor(message = 'authentication required') {
    super(401, 'unauthorized', message)
  }
}

export class Forbidden extends HttpError {
  constructor(message: string) {
    super(403, 'forbidden', message)
  }
}

export class TooManyRequests extends HttpError {
  /** `limit`: which limit refused (`login`, `signin`, `event-streams`…), for the metrics. */
  constructor(
    readonly retryAfterSeconds: number,
    message = `too many attempts, retry in ${retryAfterSeconds} s`,
    readonly limit = 'other'
  ) {
    super(429, 'too-many-requests', message)
  }
}

/** 503 with Retry-After: a dependency is down or slow, or this replica is shedding load. Nothing was written. */
export class Unavailable extends HttpError {
  constructor(
    message = 'a dependency is unavailable, retry shortly',
    readonly retryAfterSeconds = 1,
    code = 'unavailable'
  ) {
    super(503, code, message)
  }
}

/** Waits for `promise` at most `timeoutMs`; past that, a 503 saying `message` (the promise is left to settle). */
export async function within<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  const timeout = new AbortController()
  try {
    return await Promise.race([
      promise,
      sleep(timeoutMs, undefined, { signal: timeout.signal }).then(() => {
        throw new Unavailable(message)
      })
    ])
  } finally {
    timeout.abort()
  }
}

// PostgreSQL refusing a value the schema let through: it is still the client's input.
const invalidInputStates: Record<string, string> = {
  '22001': 'value too long',
  '22003': 'number out of range',
  '22021': 'text contains a character that cannot be stored',
  '22P05': 'text contains a character that cannot be stored',
  '23514': 'value violates a constraint'
}

// Fastify's own client errors keep their status; they get our body shape and a readable code.
const fastifyCodes: Record<string, string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported-media-type',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload-too-large',
  FST_ERR_CTP_INVALID_JSON_BODY: 'malformed-json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'malformed-json',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad-content-length'
}

interface Rendered {
  status: number
  code: string
  message: string
  details?: string[]
  retryAfter?: number
}

function render(error: FastifyError & { details?: string[] }, request: FastifyRequest): Rendered {
  // The client hung up or broke the framing mid-body: its fault, and nothing ran.
  if (request.raw.readableAborted || error.message === 'aborted') {
    return { status: 400, code: 'bad-request', message: 'the request body was cut off' }
  }
  if (error instanceof TooManyRequests || error instanceof Unavailable) {
    return { status: error.statusCode, code: error.code, message: error.message, retryAfter: error.retryAfterSeconds }
  }
  if (error instanceof HttpError)
    return { status: error.statusCode, code: error.code, message: error.message, details: error.details }
  if (error.validation) return { status: 422, code: 'invalid-input', message: error.message, details: error.details }
  const state = sqlState(error)
  if (isClientDataError(error))
    return { status: 422, code: 'invalid-input', message: invalidInputStates[state] ?? 'value refused by the database' }
  if (isTimeout(error))
    return { status: 503, code: 'unavailable', message: 'the database did not answer in time, retry shortly' }
  // Every dependency's outage is a 503 here, whichever route met it.
  if (isUnavailable(error))
    return { status: 503, code: 'unavailable', message: 'the database is unavailable, retry shortly' }
  if (isRedisUnavailable(error))
    return { status: 503, code: 'unavailable', message: 'the counter store is unavailable, retry shortly' }
  if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
    return { status: error.statusCode, code: fastifyCodes[state] ?? 'bad-request', message: error.message }
  }
  return { status: 500, code: 'internal', message: 'internal server error' }
}

/** The one place errors become responses: 4xx explain themselves, 5xx are logged and never leak a stack. */
export const errorsPlugin = fp(
  async (app: FastifyInstance, { exposeErrors }: { exposeErrors: boolean }) => {
    app.setErrorHandler((error: FastifyError, request, reply) => {
      const { status, code, message, details, retryAfter } = render(error, request)
      // A 503 is a dependency down or load shed, said for every request it refuses: a warning with its
      // reason, not an error with a stack each (hundreds a second while PostgreSQL restarts).
      if (status === 503) request.log.warn({ err: error.message, code }, 'request refused: unavailable')
      else if (status >= 500) request.log.error({ err: error }, 'request failed')
      else request.log.debug({ err: error.message, code }, 'request rejected')
      const body = errorBody(code, message, details)
      if (status === 500 && exposeErrors) body.stack = error.stack
      // Also for errors raised before the security headers' hook has run (an early onRequest hook).
      reply.header('x-content-type-options', 'nosniff')
      if (status === 503) reply.header('retry-after', '1')
      if (retryAfter) reply.header('retry-after', String(retryAfter))
      return reply.code(status).send(body)
    })

    // The answers any API route may give, declared here once rather than on every route: 503 (the
    // database down or slow, or the replica shedding load), 422 when it reads input, and for a body
    // 400 (malformed), 413 (too large) and 415 (not JSON). A route lists only its own refusals.
    app.addHook('onRoute', (route) => {
      const schema = route.schema as
        { body?: unknown; params?: unknown; querystring?: unknown; response?: object } | undefined
      if (!schema?.response) return
      const input = schema.body ?? schema.params ?? schema.querystring
      schema.response = {
        503: ErrorBody,
        ...(input !== undefined && { 422: ErrorBody }),
        ...(schema.body !== undefined && { 400: ErrorBody, 413: ErrorBody, 415: ErrorBody }),
        ...schema.response
      }
    })

    // Node lets an HTTP/1.1 request without Host through (requireHostHeader is off, since Node's own
    // refusal is a bare 400 without a body); it is refused here, in our shape.
    app.addHook('onRequest', (request, reply, done) => {
      if (request.headers.host === undefined && request.raw.httpVersion === '1.1') {
        reply.header('connection', 'close')
        done(new HttpError(400, 'bad-request', 'an HTTP/1.1 request needs a Host header'))
        return
      }
      done()
    })

    app.setNotFoundHandler((request, reply) =>
      reply
        .code(404)
        .header('x-content-type-options', 'nosniff')
        .send({ error: 'not-found', message: `no route for ${request.method} ${request.url.split('?')[0]}` })
    )
  },
  { name: 'errors' }
)

/**
 * Errors the framework meets before any route runs, in our shape: a path that is not valid
 * percent-encoding is a 400; a path parameter past the length limit names nothing that exists, a 404.
 */
export function frameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const path = request.url.split('?')[0]
  if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return reply.code(404).send({ error: 'not-found', message: 'no such resource: a path segment is too long' })
  }
  if (error.code === 'FST_ERR_BAD_URL') {
    return reply.code(400).send({ error: 'bad-url', message: 'the path is not valid percent-encoded UTF-8' })
  }
  request.log.debug({ err: error.message, path }, 'request refused by the router')
  return reply.code(400).send({ error: 'bad-request', message: 'the request cannot be routed' })
}

// Node's HTTP parser errors (llhttp) that have a status of their own.
const clientErrorStatus: Record<string, number> = {
  HPE_HEADER_OVERFLOW: 431,
  ERR_HTTP_REQUEST_TIMEOUT: 408,
  HPE_HEADERS_TIMEOUT: 408
}
const clientErrorCodes: Record<number, string> = {
  400: 'bad-request',
  408: 'request-timeout',
  431: 'headers-too-large'
}

/**
 * A request the HTTP parser could not read (bad request line, header or chunked encoding, headers too
 * large or too slow): answered in our JSON shape when the socket can still take it, then closed.
 */
export function clientError(error: Error & { code?: string }, socket: Socket) {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy()
    return
  }
  // A request before the unreadable one on the same connection (pipelining) is still being answered:
  // its answer goes out first, so the client learns what became of it.
  // A request whose own body is what could not be read never completes: it is answered now.
  const inProgress = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
  if (inProgress && !inProgress.writableFinished && inProgress.req.complete) {
    inProgress.once('close', () => clientError(error, socket))
    return
  }
  const status = clientErrorStatus[error.code ?? ''] ?? 400
  const body = JSON.stringify({
    error: clientErrorCodes[status],
    message: `${STATUS_CODES[status]}: the request could not be read`
  })
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`
  )
}

/** The JSON body of an answer written by hand, outside Fastify, with the headers every answer has. */
function rawAnswer(status: number, code: string, message: string, extra: Record<string, string> = {}) {
  const body = JSON.stringify({ error: code, message })
  const headers = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'x-content-type-options': 'nosniff',
    connection: 'close',
    ...extra
  }
  return { headers, body }
}

/** `Expect:` other than 100-continue (which Node answers itself): 417 in our shape. */
export function unmetExpectation(_request: IncomingMessage, response: ServerResponse) {
  const { headers, body } = rawAnswer(417, 'expectation-failed', 'only "Expect: 100-continue" is understood')
  response.writeHead(417, headers).end(body)
}

/** CONNECT asks for a tunnel, which this server never is: 405 in our shape, then the socket closes. */
export function refuseConnect(_request: IncomingMessage, socket: Duplex) {
  const { headers, body } = rawAnswer(405, 'method-not-allowed', 'CONNECT is not supported', {
    allow: 'GET, HEAD, POST, PUT, PATCH, DELETE'
  })
  const head = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}`)
    .join('\r\n')
  socket.on('error', () => socket.destroy())
  socket.end(`HTTP/1.1 405 Method Not Allowed\r\n${head}\r\n\r\n${body}`)
}
