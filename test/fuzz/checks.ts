/** What every answer must be, whatever was sent. */
import type { Context, HttpCase, RawCase } from './cases.js'
import type { RawResult } from './raw.js'
import type { Outcome } from './transport.js'

export interface Problem {
  /** The kind of failure, stable across cases: what the report groups by. */
  check: string
  /** This case's particulars. */
  note: string
}

// Error codes are stable machine-readable words: `not-found`, `invalid-input`, `too-many-requests`.
const errorCode = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/
const allowedKeys = new Set(['error', 'message', 'details'])

/** What is wrong with a 4xx answer's body (`hasBody` false for HEAD: only the type can be checked). */
export function errorBodyProblems(contentType: string | undefined, body: Buffer, hasBody: boolean): Problem[] {
  if (!/^application\/json\s*(;|$)/i.test(contentType ?? '')) {
    return [
      {
        check: 'error answer is not JSON',
        note: `content-type ${JSON.stringify(contentType ?? null)}${hasBody ? `, body ${snippet(body)}` : ''}`
      }
    ]
  }
  if (!hasBody) return []
  const problems: Problem[] = []
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return [{ check: 'error body is not JSON', note: snippet(body) }]
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return [{ check: 'error body is not an object', note: snippet(body) }]
  }
  const { error, message, details, stack } = parsed as Record<string, unknown>
  if (typeof error !== 'string' || !errorCode.test(error))
    problems.push({ check: 'error body: "error" is not a code', note: `error ${JSON.stringify(error)}` })
  if (typeof message !== 'string')
    problems.push({ check: 'error body: "message" is not a string', note: `message ${JSON.stringify(message)}` })
  if (details !== undefined && !(Array.isArray(details) && details.every((item) => typeof item === 'string'))) {
    problems.push({
      check: 'error body: "details" is not a list of strings',
      note: snippet(Buffer.from(JSON.stringify(details)))
    })
  }
  if (stack !== undefined)
    problems.push({ check: 'error body carries a stack trace', note: snippet(Buffer.from(String(stack))) })
  const extra = Object.keys(parsed).filter((key) => !allowedKeys.has(key))
  if (extra.length > 0)
    problems.push({ check: 'error body has keys beyond error, message, details', note: extra.join(', ') })
  return problems
}

// Text that only files outside the web root hold: the server's code, the project's files, the system's.
const leakMarkers = [
  'root:x:0:',
  '"devDependencies"',
  'DATABASE_URL',
  '"compilerOptions"',
  'PRIVATE KEY',
  'repositoryformatversion',
  'createRequire',
  '#!/usr/bin/env node'
]

function serverError(status: number, contentType: string | undefined, body: Buffer): Problem {
  let code = ''
  if (/json/.test(contentType ?? '')) {
    try {
      code = String((JSON.parse(body.toString('utf8')) as { error?: unknown }).error ?? '')
    } catch {
      /* not JSON: shown as is */
    }
  }
  if (status === 503)
    return {
      check: `503 ${code || '(no code)'}${code === 'overloaded' ? ' (load shedding)' : ''}`,
      note: snippet(body)
    }
  return { check: `${status} answer`, note: snippet(body) }
}

/** An exact static HTML page (its own 4xx, a 416 say, may be HTML); every other 4xx is an API error. */
function isHtmlPage(path: string, ctx: Context): boolean {
  return ctx.htmlFiles.has(path.split(/[?#]/)[0])
}

// The replicas' BODY_LIMIT_BYTES (the default): a body past it is refused before it is read.
const bodyLimitBytes = 64 * 1024

export function judgeHttp(c: HttpCase, outcome: Outcome, ctx: Context): Problem[] {
  // A server may answer 413 and close while a client is still sending a body it will never read
  // (RFC 9112 §9.6); the client then sees its write fail before it reads the answer. That is the
  // server refusing, not failing.
  const oversized = c.body !== undefined && Buffer.byteLength(c.body) > bodyLimitBytes
  if ('error' in outcome && oversized && /EPIPE|ECONNRESET/.test(outcome.error)) return []
  if ('error' in outcome) {
    return [
      {
        check: outcome.error.startsWith('no answer')
          ? 'no answer in time'
          : outcome.error.startsWith('the harness')
            ? 'harness could not send the case'
            : 'connection failed without an answer',
        note: outcome.error
      }
    ]
  }
  const { status, headers, body } = outcome.answer
  const contentType = headers['content-type']
  const problems: Problem[] = []
  if (status >= 500) problems.push(serverError(status, contentType, body))
  if (c.expect === 'refused' && status < 400)
    problems.push({ check: 'hostile request accepted', note: `${status} ${snippet(body)}` })
  if (status >= 400 && status < 500 && !isHtmlPage(c.path, ctx))
    problems.push(...errorBodyProblems(contentType, body, c.method !== 'HEAD'))
  if (c.noLeak) {
    const text = body.toString('latin1')
    const marker = leakMarkers.find((item) => text.includes(item))
    if (marker)
      problems.push({
        check: 'file from outside the web root served',
        note: `${status}, body holds ${JSON.stringify(marker)}`
      })
  }
  return problems
}

export function judgeRaw(c: RawCase, result: RawResult): Problem[] {
  const problems: Problem[] = []
  for (const response of result.responses) {
    if (response.status >= 500)
      problems.push(serverError(response.status, response.headers['content-type'], response.body))
    else if (response.status >= 400)
      problems.push(...errorBodyProblems(response.headers['content-type'], response.body, true))
    else if (c.refusedOnly)
      problems.push({ check: 'hostile request accepted', note: `${response.status} ${snippet(response.body)}` })
  }
  const wanted = c.responses ?? 1
  // A server may answer an error and close the connection, saying so (RFC 9112 §9.6): the requests
  // pipelined behind it are then unanswered by design, and the client knows to resend them.
  const last = result.responses.at(-1)
  const closedAfterError =
    !!last && last.status >= 400 && result.closedByServer && /close/i.test(String(last.headers.connection ?? ''))
  if (c.expect === 'answer' && result.responses.length < wanted && !closedAfterError) {
    const heard =
      result.trailing.length > 0
        ? `unreadable bytes ${snippet(result.trailing)}`
        : result.closedByServer
          ? 'the server closed the connection'
          : `nothing within ${c.boundMs} ms`
    const check =
      result.responses.length > 0
        ? 'pipelined request left unanswered'
        : result.closedByServer && result.trailing.length === 0
          ? 'connection closed without an answer'
          : 'no readable answer'
    problems.push({ check, note: `${result.responses.length} of ${wanted} answers; ${heard}` })
  }
  if (c.expect === 'cutoff' && !result.closedByServer)
    problems.push({ check: 'slow client not cut off', note: `still connected after ${result.ms} ms` })
  if (c.expect !== 'answer' && result.responses.length === 0 && result.trailing.length > 0 && result.closedByServer) {
    problems.push({ check: 'unreadable bytes before closing', note: snippet(result.trailing) })
  }
  return problems
}

export function snippet(body: Buffer | string, max = 160): string {
  const text = typeof body === 'string' ? body : body.toString('utf8')
  const shown = JSON.stringify(text.length > max ? text.slice(0, max) : text)
  return text.length > max ? `${shown}… (${text.length} chars)` : shown
}
