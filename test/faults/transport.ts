import { Agent, request, type IncomingHttpHeaders } from 'node:http'

/** A replica as the load sees it: its port and a kept-alive pool of sockets of its own. */
export interface Target {
  name: string
  port: number
  agent: Agent
}

export function target(name: string, port: number): Target {
  // Enough sockets for every lane plus the requests a scenario holds in flight on purpose.
  return { name, port, agent: new Agent({ keepAlive: true, maxSockets: 128 }) }
}

export interface Answer {
  ok: true
  status: number
  headers: IncomingHttpHeaders
  text: string
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any
  startedAt: number
  ms: number
}

export interface Failure {
  ok: false
  /** The socket error's code (ECONNRESET, ECONNREFUSED, …) or `timeout`. */
  error: string
  /**
   * The request went out on a kept-alive socket the client had used before: a reset there can be
   * the server closing an idle socket as the request was written, which the server never read.
   */
  reused: boolean
  startedAt: number
  ms: number
}

export type Outcome = Answer | Failure

export interface Send {
  method: string
  path: string
  json?: unknown
  headers?: Record<string, string>
  timeoutMs: number
}

/**
 * One request, bounded by `timeoutMs`, never retried here: a retry is the scenario's decision (with
 * the same Idempotency-Key, on the surviving replica), and it must be counted.
 */
export function send(to: Target, { method, path, json, headers = {}, timeoutMs }: Send): Promise<Outcome> {
  const startedAt = Date.now()
  const body = json === undefined ? undefined : JSON.stringify(json)
  const allHeaders: Record<string, string> = { ...headers }
  if (body !== undefined) {
    allHeaders['content-type'] = 'application/json'
    allHeaders['content-length'] = String(Buffer.byteLength(body))
  }
  return new Promise((resolve) => {
    let settled = false
    const finish = (outcome: Omit<Answer, 'startedAt' | 'ms'> | Omit<Failure, 'startedAt' | 'ms'>) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve({ ...outcome, startedAt, ms: Date.now() - startedAt } as Outcome)
    }
    const reused = () => req.reusedSocket
    const req = request({ host: '127.0.0.1', port: to.port, method, path, headers: allHeaders, agent: to.agent })
    const timer = setTimeout(() => {
      finish({ ok: false, error: 'timeout', reused: reused() })
      req.destroy()
    }, timeoutMs)
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', (error: NodeJS.ErrnoException) =>
        finish({ ok: false, error: `body: ${error.code ?? error.message}`, reused: reused() })
      )
      res.on('aborted', () => finish({ ok: false, error: 'body: aborted', reused: reused() }))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let parsed: unknown = text
        if (String(res.headers['content-type'] ?? '').includes('json') && text) {
          try {
            parsed = JSON.parse(text)
          } catch {
            // left as text: the check that reads it will say what it got
          }
        }
        finish({ ok: true, status: res.statusCode ?? 0, headers: res.headers, text, body: parsed })
      })
    })
    req.on('error', (error: NodeJS.ErrnoException) =>
      finish({ ok: false, error: error.code ?? error.message, reused: reused() })
    )
    req.end(body)
  })
}

/** `200`, `503`, `ECONNRESET`: what an outcome was, for tallies. */
export const describe = (outcome: Outcome): string => (outcome.ok ? String(outcome.status) : outcome.error)
