import { Agent, request, type IncomingHttpHeaders } from 'node:http'
import type { HttpCase } from './cases.js'

export interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
}

export type Outcome = { answer: Answer } | { error: string }

/** How long an event stream is read before the client hangs up: enough for its first bytes. */
const streamReadMs = 400

/**
 * One request exactly as the case says: node:http sends the path as given (fetch would resolve
 * `/../` and re-encode it). Bounded by `timeoutMs`. A kept-alive socket the server closed just as it
 * was reused is retried once on a fresh one, as Node's documentation advises: the server never saw it.
 */
export async function send(agent: Agent, port: number, c: HttpCase, timeoutMs: number): Promise<Outcome> {
  const first = await attempt(agent, port, c, timeoutMs)
  if ('retry' in first)
    return attempt(agent, port, c, timeoutMs).then((again) => ('retry' in again ? { error: again.error } : again))
  return first
}

function attempt(
  agent: Agent,
  port: number,
  c: HttpCase,
  timeoutMs: number
): Promise<Outcome | { retry: true; error: string }> {
  return new Promise((resolve) => {
    let settled = false
    const finish = (outcome: Outcome | { retry: true; error: string }) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve(outcome)
    }
    const headers = { ...c.headers }
    const chunked = headers['transfer-encoding'] === 'chunked'
    if (c.body !== undefined && !chunked) headers['content-length'] = String(Buffer.byteLength(c.body))
    let req: ReturnType<typeof request>
    try {
      req = request({ host: '127.0.0.1', port, method: c.method, path: c.path, headers, agent })
    } catch (error) {
      finish({ error: `the harness could not send it: ${(error as Error).message}` })
      return
    }
    const timer = setTimeout(() => {
      finish({ error: `no answer within ${timeoutMs} ms` })
      req.destroy()
    }, timeoutMs)
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      const done = () =>
        finish({ answer: { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) } })
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', done)
      res.on('error', done)
      res.on('aborted', done)
      if (c.expect === 'stream' && /event-stream/.test(String(res.headers['content-type']))) {
        setTimeout(() => {
          done()
          req.destroy()
        }, streamReadMs)
      }
    })
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (req.reusedSocket && error.code === 'ECONNRESET') finish({ retry: true, error: error.message })
      else finish({ error: `connection failed: ${error.code ?? error.message}` })
    })
    // A chunked upload goes in two pieces: no Content-Length says how much is coming.
    if (chunked && c.body !== undefined) {
      const body = Buffer.from(c.body)
      req.write(body.subarray(0, body.length >> 1))
      req.end(body.subarray(body.length >> 1))
    } else {
      req.end(c.body)
    }
  })
}
