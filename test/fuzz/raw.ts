/**
 * Malformed HTTP written straight to a TCP socket (no client library would send it), and a reader
 * of whatever comes back: bad request lines and headers, oversized headers, broken chunked encoding,
 * lying Content-Length, smuggling, pipelining, and clients too slow to finish.
 */
import { connect } from 'node:net'
import type { Context, RawCase, RawStep } from './cases.js'
import type { Random } from './random.js'

const crlf = '\r\n'
const bytes = (text: string) => Buffer.from(text, 'latin1')
const host = 'Host: 127.0.0.1'

/** A request head (request line and headers) with its blank line. */
const head = (line: string, ...headers: string[]) => [line, ...headers].join(crlf) + crlf + crlf

/** A credit that must never be applied: it only ever rides inside a request the server must refuse. */
const smuggledWrite = (sheet: string) =>
  rawRequest(
    'POST',
    `/api/attendance/sheet/${sheet}/student/registration`,
    '{"nmec":77777777,"name":"Smuggled Student"}'
  )
const credit = rawRequest('POST', '/clientes/1/transacoes', '{"valor":7,"tipo":"c","descricao":"smuggled"}')

function rawRequest(method: string, path: string, body: string) {
  return (
    head(
      `${method} ${path} HTTP/1.1`,
      host,
      'Content-Type: application/json',
      `Content-Length: ${Buffer.byteLength(body)}`
    ) + body
  )
}

type Make = (rng: Random, ctx: Context) => Omit<RawCase, 'kind' | 'family'>

const answer = (
  route: string,
  what: string,
  text: string | Buffer,
  responses = 1
): Omit<RawCase, 'kind' | 'family'> => ({
  route,
  what,
  steps: [typeof text === 'string' ? bytes(text) : text],
  expect: 'answer',
  responses,
  boundMs: 3000
})

const requestLines = [
  'GARBAGE',
  'GET',
  'GET /',
  'GET / HTTP/1.1 extra',
  ' GET /health HTTP/1.1',
  'GET  /health HTTP/1.1',
  'GET /health  HTTP/1.1',
  'GET /health HTTP/9.9',
  'GET /health HTTP/1.1.1',
  'GET /health http/1.1',
  'GET /health HTTP/1',
  'GET /health HTTP/',
  'GET /\x00 HTTP/1.1',
  'GET /a b HTTP/1.1',
  'GET /\x7f HTTP/1.1',
  'GET /\xff\xfe HTTP/1.1',
  'get /health HTTP/1.1',
  'FOO /health HTTP/1.1',
  'G\x00ET /health HTTP/1.1',
  'GET health HTTP/1.1',
  'GET * HTTP/1.1',
  'GET /health\tHTTP/1.1',
  'GET /he\x01alth HTTP/1.1',
  'GET /%00 HTTP/1.1',
  'GET /%ff%fe HTTP/1.1',
  'GET /\u00e9 HTTP/1.1',
  `GET /${'%'.repeat(3000)} HTTP/1.1`,
  'PRI * HTTP/2.0',
  'GET /health HTTP/2.0',
  'GET /health HTTP/0.9',
  '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'
]

/** Requests the server may read or refuse, but must answer (absolute form, asterisk form, leading empty lines). */
const oddButReadable = [
  head('GET http://evil.example/health HTTP/1.1', host),
  head('OPTIONS * HTTP/1.1', host),
  `${crlf}${crlf}${head('GET /health HTTP/1.1', host)}`,
  head('GET //health HTTP/1.1', host),
  head('GET /health HTTP/1.0'),
  head('GET /health?%zz=%zz HTTP/1.1', host),
  head('GET /health HTTP/1.1', host, 'Accept: text/plain'),
  head('GET /health HTTP/1.1', 'Host: evil.example'),
  head('GET /health HTTP/1.1', 'Host:'),
  head('GET /health HTTP/1.1', `Host: ${'h'.repeat(4000)}`),
  head('GET /health HTTP/1.1', host, 'Connection: keep-alive, Upgrade, close'),
  head('GET /health HTTP/1.1', host, 'Transfer-Encoding: chunked') + `0${crlf}${crlf}`
]

const badHeaders = [
  'Bad Header',
  ': novalue',
  'X-A\x00: b',
  'X-A: b\x00c',
  'X-A: b\rc',
  'X A: b',
  'X-A : b',
  '\x7fX: b',
  'X-\xdc: b',
  'X-A:\x01b',
  ' X-Folded: y',
  'X-A: a\r\n  folded',
  'Host: second.example',
  'Content-Length: 1\r\nContent-Length: 2',
  'Transfer-Encoding: chunked\r\nContent-Length: 3',
  '\x00',
  'X-A: \xff\xfe',
  `${'X'.repeat(300)}: b`,
  'Expect: 999-nope'
]

const contentLengths = ['abc', '-1', '1.5', '99999999999999999999', '0x10', '+5', '5, 5', '5,6', '', ' ', '1e3', '٥']

const chunkedBodies = [
  `zz${crlf}abc${crlf}0${crlf}${crlf}`,
  `-1${crlf}a${crlf}0${crlf}${crlf}`,
  `ffffffffffffffffff${crlf}abc${crlf}`,
  `5${crlf}abc${crlf}0${crlf}${crlf}`,
  `3;ext=\x00${crlf}abc${crlf}0${crlf}${crlf}`,
  `3${crlf}abc0${crlf}${crlf}`,
  `3 ${crlf}abc${crlf}0${crlf}${crlf}`,
  `0x3${crlf}abc${crlf}0${crlf}${crlf}`,
  `3\nabc\n0\n\n`,
  `3${crlf}abc${crlf}0${crlf}X-Trailer: \x00${crlf}${crlf}`,
  `${'0'.repeat(5000)}3${crlf}abc${crlf}0${crlf}${crlf}`
]

const transferEncodings = [
  'chunked, identity',
  'gzip',
  'xchunked',
  'chunked\r\nTransfer-Encoding: chunked',
  'identity',
  'chunked;q=1',
  ' chunked',
  'CHUNKED',
  'chunked, chunked'
]

const makers: Array<readonly [number, Make]> = [
  [
    6,
    (rng) => {
      const line = rng.pick(requestLines)
      return answer('request line', `bad request line ${JSON.stringify(line.slice(0, 40))}`, head(line, host))
    }
  ],
  [1, () => answer('request line', 'missing Host (HTTP/1.1)', head('GET /health HTTP/1.1'))],
  [
    2,
    (rng) => {
      const text = rng.pick(oddButReadable)
      return answer('request line', `odd but readable request ${JSON.stringify(text.slice(0, 40))}`, text)
    }
  ],
  [
    5,
    (rng) => {
      const bad = rng.pick(badHeaders)
      return answer(
        'headers',
        `bad header ${JSON.stringify(bad.slice(0, 40))}`,
        head('GET /health HTTP/1.1', host, bad)
      )
    }
  ],
  [
    2,
    (rng) => {
      const bad = rng.pick(badHeaders)
      return answer(
        'headers',
        `bad header ${JSON.stringify(bad.slice(0, 40))} on a write`,
        head('POST /clientes/6/transacoes HTTP/1.1', host, 'Content-Type: application/json', bad) + '{"valor":1}'
      )
    }
  ],
  [1, () => answer('headers', 'LF-only line ends', 'GET /health HTTP/1.1\nHost: 127.0.0.1\n\n')],
  [1, () => answer('headers', 'bare CR line ends', 'GET /health HTTP/1.1\rHost: 127.0.0.1\r\r')],
  [
    4,
    (rng) => {
      const size = rng.pick([17_000, 40_000, 100_000])
      const shape = rng.pick(['one long header', 'many headers', 'a long cookie', 'a long request line'])
      const text =
        shape === 'one long header'
          ? head('GET /health HTTP/1.1', host, `X-Big: ${'b'.repeat(size)}`)
          : shape === 'many headers'
            ? head(
                'GET /health HTTP/1.1',
                host,
                ...Array.from({ length: Math.ceil(size / 12) }, (_, i) => `X-H${i}: v`)
              )
            : shape === 'a long cookie'
              ? head('GET /api/users/me HTTP/1.1', host, `Cookie: tandem_session=${'c'.repeat(size)}`)
              : head(`GET /clientes/${'1'.repeat(size)}/extrato HTTP/1.1`, host)
      return answer('headers', `oversized headers: ${shape} (${size} bytes)`, text)
    }
  ],
  [
    4,
    (rng) =>
      answer(
        'content-length',
        `Content-Length ${JSON.stringify(rng.pick(contentLengths))}`,
        head(
          'POST /clientes/6/transacoes HTTP/1.1',
          host,
          'Content-Type: application/json',
          `Content-Length: ${rng.pick(contentLengths)}`
        ) + '{"valor":1,"tipo":"c","descricao":"x"}'
      )
  ],
  [
    1,
    () =>
      answer(
        'content-length',
        'Content-Length shorter than the body (the rest is a second, garbage request)',
        head('POST /clientes/6/transacoes HTTP/1.1', host, 'Content-Type: application/json', 'Content-Length: 5') +
          '{"valor":1,"tipo":"c","descricao":"x"}',
        2
      )
  ],
  [
    1,
    () => ({
      route: 'content-length',
      what: 'Content-Length longer than the body, then silence',
      steps: [
        bytes(
          head('POST /clientes/6/transacoes HTTP/1.1', host, 'Content-Type: application/json', 'Content-Length: 100') +
            '{"valor":'
        ),
        { pauseMs: 400 }
      ],
      expect: 'optional',
      boundMs: 600
    })
  ],
  [
    1,
    () =>
      answer(
        'content-length',
        'huge Content-Length, no body',
        head(
          'POST /clientes/6/transacoes HTTP/1.1',
          host,
          'Content-Type: application/json',
          'Content-Length: 10000000000'
        )
      )
  ],
  [
    1,
    () => answer('content-length', 'body on a GET', head('GET /health HTTP/1.1', host, 'Content-Length: 5') + 'hello')
  ],
  [
    4,
    (rng) => {
      const body = rng.pick(chunkedBodies)
      return answer(
        'chunked',
        `bad chunked encoding ${JSON.stringify(body.slice(0, 30))}`,
        head(
          'POST /clientes/6/transacoes HTTP/1.1',
          host,
          'Content-Type: application/json',
          'Transfer-Encoding: chunked'
        ) + body
      )
    }
  ],
  [
    2,
    (rng) => {
      const te = rng.pick(transferEncodings)
      return answer(
        'chunked',
        `Transfer-Encoding ${JSON.stringify(te)}`,
        head(
          'POST /clientes/6/transacoes HTTP/1.1',
          host,
          'Content-Type: application/json',
          `Transfer-Encoding: ${te}`
        ) + `3${crlf}abc${crlf}0${crlf}${crlf}`
      )
    }
  ],
  // Smuggling: a second request hidden behind framing the server must refuse. If it ever ran, the state check sees the write.
  [
    1,
    () => ({
      ...answer(
        'smuggling',
        'Content-Length and Transfer-Encoding (CL.TE) hiding a credit',
        head(
          'POST /clientes/6/transacoes HTTP/1.1',
          host,
          'Content-Type: application/json',
          `Content-Length: ${4 + credit.length}`,
          'Transfer-Encoding: chunked'
        ) + `0${crlf}${crlf}${credit}`
      ),
      refusedOnly: true
    })
  ],
  [
    1,
    (_rng, ctx) => {
      const inner = smuggledWrite(ctx.sheets.open)
      const chunk = `${Buffer.byteLength(inner).toString(16)}${crlf}${inner}${crlf}0${crlf}${crlf}`
      return {
        ...answer(
          'smuggling',
          'Transfer-Encoding and a short Content-Length (TE.CL) hiding a sign-in',
          head(
            'POST /clientes/6/transacoes HTTP/1.1',
            host,
            'Content-Type: application/json',
            'Content-Length: 4',
            'Transfer-Encoding: chunked'
          ) + chunk
        ),
        refusedOnly: true
      }
    }
  ],
  [
    1,
    () => ({
      ...answer(
        'smuggling',
        'obfuscated Transfer-Encoding hiding a credit',
        head(
          'POST /clientes/6/transacoes HTTP/1.1',
          host,
          'Content-Type: application/json',
          'Content-Length: 4',
          'Transfer-Encoding: x, chunked',
          'Transfer-encoding: identity'
        ) + `0${crlf}${crlf}${credit}`
      ),
      refusedOnly: true
    })
  ],
  [
    2,
    () =>
      answer(
        'pipelining',
        'two requests in one write',
        head('GET /health HTTP/1.1', host) + head('GET /ready HTTP/1.1', host),
        2
      )
  ],
  [
    1,
    () => answer('pipelining', 'a request, then garbage', head('GET /health HTTP/1.1', host) + head('GARBAGE', host), 2)
  ],
  [
    1,
    () =>
      answer(
        'pipelining',
        'a refused write, then a read',
        rawRequest('POST', '/clientes/6/transacoes', '{"valor":1,"tipo":"c","descricao":"x"}') +
          head('GET /clientes/1/extrato HTTP/1.1', host),
        2
      )
  ],
  [
    1,
    () =>
      answer(
        'expect',
        'Expect: 100-continue on a refused write',
        head(
          'POST /clientes/6/transacoes HTTP/1.1',
          host,
          'Content-Type: application/json',
          'Content-Length: 38',
          'Expect: 100-continue'
        ) + '{"valor":1,"tipo":"c","descricao":"x"}'
      )
  ],
  [
    1,
    (rng) => ({
      route: 'upgrade',
      what: 'protocol upgrade request',
      steps: [
        bytes(
          head(
            'GET /health HTTP/1.1',
            host,
            'Connection: Upgrade',
            rng.pick(['Upgrade: websocket', 'Upgrade: h2c', 'Upgrade: \x00']),
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
            'Sec-WebSocket-Version: 13'
          )
        )
      ],
      expect: 'optional',
      boundMs: 1000
    })
  ],
  [
    1,
    () => ({
      route: 'request line',
      what: 'CONNECT',
      steps: [bytes(head('CONNECT 127.0.0.1:5432 HTTP/1.1', 'Host: 127.0.0.1:5432'))],
      expect: 'answer',
      responses: 1,
      boundMs: 2000
    })
  ],
  // Slow clients: the server must cut them off (HEADERS_TIMEOUT_MS is set to 1 s for this run) without stalling anyone else.
  [
    1,
    () => ({
      route: 'slow client',
      what: 'headers trickled, never finished',
      steps: trickle(head('GET /health HTTP/1.1', host).slice(0, -2), 'X-Slow: a\r\n', 20, 250),
      expect: 'cutoff',
      boundMs: 4500
    })
  ],
  [
    1,
    () => ({
      route: 'slow client',
      what: 'request line trickled byte by byte',
      steps: trickle('', 'G', 30, 200),
      expect: 'cutoff',
      boundMs: 4500
    })
  ],
  [
    1,
    () => ({
      route: 'slow client',
      what: 'connection opened, nothing sent',
      steps: [{ pauseMs: 300 }],
      expect: 'optional',
      boundMs: 500
    })
  ],
  [
    1,
    () => ({
      route: 'slow client',
      what: 'body trickled',
      steps: [
        bytes(
          head('POST /clientes/6/transacoes HTTP/1.1', host, 'Content-Type: application/json', 'Content-Length: 1000')
        ),
        ...trickle('', 'x', 4, 150)
      ],
      expect: 'optional',
      boundMs: 800
    })
  ],
  [
    1,
    () => ({
      route: 'slow client',
      what: 'headers cut off mid-line, then the client hangs up',
      steps: [bytes('GET /health HTTP/1.1\r\nHo'), { pauseMs: 200 }],
      expect: 'optional',
      boundMs: 300
    })
  ]
]

function trickle(start: string, piece: string, times: number, pauseMs: number): RawStep[] {
  const steps: RawStep[] = start ? [bytes(start)] : []
  for (let i = 0; i < times; i++) steps.push(bytes(piece), { pauseMs })
  return steps
}

export function rawCase(rng: Random, ctx: Context): RawCase {
  return { kind: 'raw', family: 'raw-http', ...rng.weighted(makers)(rng, ctx) }
}

// ---------------------------------------------------------------------------------------------------
// The exchange and the reader

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: Buffer
}

export interface RawResult {
  responses: RawResponse[]
  /** Bytes after the last complete response (an unfinished or unreadable one). */
  trailing: Buffer
  closedByServer: boolean
  /** Until the server closed or the exchange ended. */
  ms: number
}

/** Writes the steps, then reads until the server closes, `responses` complete answers came, or the bound passes. */
export async function exchange(port: number, c: RawCase): Promise<RawResult> {
  const started = Date.now()
  const socket = connect(port, '127.0.0.1')
  let data = Buffer.alloc(0)
  let closedByServer = false
  let settle: () => void = () => {}
  const done = new Promise<void>((resolve) => {
    settle = resolve
  })
  const wanted = c.responses ?? 1
  socket.on('data', (chunk) => {
    data = Buffer.concat([data, chunk])
    if (c.expect !== 'cutoff' && parse(data, false).responses.length >= wanted) settle()
  })
  socket.on('error', () => {}) // a reset is an outcome like a close; the reader decides
  socket.on('close', () => {
    closedByServer = true
    settle()
  })
  const timer = setTimeout(settle, c.boundMs)
  void (async () => {
    for (const step of c.steps) {
      if (socket.destroyed) return
      if (Buffer.isBuffer(step)) socket.write(step)
      else await new Promise((resolve) => setTimeout(resolve, step.pauseMs))
    }
  })()
  await done
  clearTimeout(timer)
  const ms = Date.now() - started
  const ended = socket.destroyed
  socket.destroy()
  const { responses, trailing } = parse(data, closedByServer || ended)
  return { responses, trailing, closedByServer, ms }
}

/** HTTP/1.x responses in `data`, interim (1xx) ones skipped; a body without a length runs to the close. */
export function parse(data: Buffer, closed: boolean): { responses: RawResponse[]; trailing: Buffer } {
  const responses: RawResponse[] = []
  let rest = data
  for (;;) {
    const end = rest.indexOf('\r\n\r\n')
    if (end < 0) break
    const lines = rest.subarray(0, end).toString('latin1').split('\r\n')
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0])
    if (!status) break
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':')
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const code = Number(status[1])
    let body = rest.subarray(end + 4)
    let consumed: number
    if (code < 200 || code === 204 || code === 304) {
      consumed = end + 4
      body = Buffer.alloc(0)
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const decoded = dechunk(body)
      if (!decoded) break
      consumed = end + 4 + decoded.length
      body = decoded.body
    } else if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length'])
      if (!Number.isSafeInteger(length) || body.length < length) break
      consumed = end + 4 + length
      body = body.subarray(0, length)
    } else {
      if (!closed) break
      consumed = rest.length
    }
    rest = rest.subarray(consumed)
    if (code >= 200) responses.push({ status: code, headers, body })
  }
  return { responses, trailing: rest }
}

function dechunk(data: Buffer): { body: Buffer; length: number } | undefined {
  const parts: Buffer[] = []
  let at = 0
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at)
    if (lineEnd < 0) return undefined
    const size = parseInt(data.subarray(at, lineEnd).toString('latin1'), 16)
    if (!Number.isFinite(size)) return undefined
    at = lineEnd + 2
    if (size === 0) {
      const trailerEnd = data.indexOf('\r\n', at)
      return trailerEnd < 0 ? undefined : { body: Buffer.concat(parts), length: trailerEnd + 2 }
    }
    if (data.length < at + size + 2) return undefined
    parts.push(data.subarray(at, at + size))
    at += size + 2
  }
}
