/** What a generated case is, and what the valid setup left for the cases to aim at. */

/**
 * `refused`: the request must not be accepted (a 4xx): it is invalid, unauthorised or aimed at
 * something it may not touch, so a 2xx means the server let hostile input through.
 * `any`: a read, or a method that may legitimately answer; it only must not fail (no 5xx, errors in shape).
 * `stream`: an event stream; read its first bytes, then hang up.
 */
export type Expectation = 'refused' | 'any' | 'stream'

export interface HttpCase {
  kind: 'http'
  family: string
  /** The route as its module declares it, e.g. `POST /clientes/:id/transacoes`. */
  route: string
  /** What makes this case hostile, for the report. */
  what: string
  method: string
  /** Sent as is (no normalisation of dot segments or percent-encoding). */
  path: string
  headers: Record<string, string>
  body?: string | Buffer
  expect: Expectation
  /** A path-trick case: the answer must not carry a file from outside the web root. */
  noLeak?: boolean
}

export type RawStep = Buffer | { pauseMs: number }

/**
 * `answer`: the server must answer (at least `responses` complete HTTP responses) before the bound.
 * `optional`: it may wait for more bytes or close; whatever it sends must still be well formed.
 * `cutoff`: a slow client: by the bound the server must have answered or closed the connection.
 */
export type RawExpectation = 'answer' | 'optional' | 'cutoff'

export interface RawCase {
  kind: 'raw'
  family: string
  route: string
  what: string
  steps: RawStep[]
  expect: RawExpectation
  responses?: number
  /** Every answer must be a refusal (smuggling: nothing hidden in the request may run). */
  refusedOnly?: boolean
  boundMs: number
}

export type Case = HttpCase | RawCase

export interface Account {
  email: string
  password: string
  userId: number
  token: string
}

/** Everything the valid setup made, by role. */
export interface Context {
  /** The teacher whose sheets most cases aim at. */
  teacher: Account
  /** Another teacher: their token on the first teacher's sheets, and sheets of their own. */
  other: Account
  /** A user only the password-change cases use (with the right current password and a wrong new one). */
  passwordUser: Account
  /** Tokens of sessions that no longer count. */
  deadTokens: { expired: string; idle: string; loggedOut: string; revokedByPasswordChange: string }
  sheets: { open: string; closed: string; otherOpen: string; otherClosed: string }
  /** Student numbers signed in on `sheets.open` (a repeat is a 409). */
  signedIn: number[]
  incrementKeys: string[]
  /** Paths of the built web UI, as the browser asks for them (`/`, `/index.html`, `/assets/…`). */
  webFiles: string[]
  /** The subset of `webFiles` that are HTML pages: their 4xx (a 416, say) need not be JSON. */
  htmlFiles: Set<string>
}
