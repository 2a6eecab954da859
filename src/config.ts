import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { Type, type Static } from 'typebox'
import Value from 'typebox/value'

const ConfigSchema = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 9999 }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  WORKERS: Type.Integer({ minimum: 1, maximum: 256, default: 2 }),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  // The password of DATABASE_URL, any characters (Tandem encodes it): a secret pasted into a URL
  // breaks it whenever it holds / ? # @ :. From a file (Docker/Kubernetes secrets) with _FILE.
  DATABASE_PASSWORD: Type.Optional(Type.String()),
  DATABASE_PASSWORD_FILE: Type.Optional(Type.String({ minLength: 1 })),
  DATABASE_POOL_MAX: Type.Integer({ minimum: 1, maximum: 1000, default: 10 }),
  DATA_DIR: Type.String({ minLength: 1, default: './.data' }),
  EMBEDDED_POSTGRES_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 0 }),
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], {
    default: 'development'
  }),
  // /metrics on a port of its own (not behind the proxy, not public), or on the API port when unset.
  METRICS_PORT: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  METRICS_HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  // One line per request at info: by default in production only.
  ACCESS_LOG: Type.Union([Type.Literal('auto'), Type.Literal('true'), Type.Literal('false')], { default: 'auto' }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { default: 'info' }
  ),
  BODY_LIMIT_BYTES: Type.Integer({ minimum: 1024, maximum: 100 * 1024 * 1024, default: 64 * 1024 }),
  SHUTDOWN_TIMEOUT_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 10_000 }),
  DATABASE_WAIT_MS: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 60_000 }),
  INCREMENT_MAX_LAG_MS: Type.Integer({ minimum: 1, maximum: 10_000, default: 1000 }),
  INCREMENT_BATCH_WINDOW_MS: Type.Integer({ minimum: 0, maximum: 1000, default: 2 }),
  SESSION_TTL_MS: Type.Integer({ minimum: 1000, maximum: 90 * 24 * 3_600_000, default: 12 * 3_600_000 }),
  SESSION_IDLE_MS: Type.Integer({ minimum: 1000, maximum: 90 * 24 * 3_600_000, default: 50 * 60_000 }),
  PUBLIC_URL: Type.Optional(Type.String({ pattern: '^https?://[^/\\s]+/?$' })),
  // Behind nginx every client has the proxy's address: trust X-Forwarded-* from this many hops (1 behind
  // one nginx) or from these addresses/CIDRs. Off by default, since anyone could otherwise claim any
  // address; never "every peer", which would let each client choose the address its limits count.
  TRUST_PROXY: Type.String({ default: 'false' }),
  // The session cookie's Secure flag: as the browser's scheme (auto), or always/never.
  COOKIE_SECURE: Type.Union([Type.Literal('auto'), Type.Literal('true'), Type.Literal('false')], { default: 'auto' }),
  LOGIN_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 100_000, default: 20 }),
  LOGIN_ADDRESS_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 100_000, default: 60 }),
  LOGIN_EMAIL_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 100_000, default: 30 }),
  REGISTRATION_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 100_000, default: 10 }),
  REGISTRATION_TOTAL_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 300 }),
  PASSWORD_CHANGE_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 10_000, default: 5 }),
  PASSWORD_CHANGE_MAX_FAILURES: Type.Integer({ minimum: 1, maximum: 1000, default: 5 }),
  PASSWORD_HASH_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 64, default: 2 }),
  PASSWORD_HASH_QUEUE_MAX: Type.Integer({ minimum: 0, maximum: 100_000, default: 64 }),
  ATTENDANCE_SIGNIN_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 600 }),
  SHEET_MISS_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 30 }),
  DATABASE_STATEMENT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600_000, default: 5000 }),
  DATABASE_LOCK_TIMEOUT_MS: Type.Integer({ minimum: 10, maximum: 600_000, default: 1000 }),
  INCREMENT_QUEUE_MAX: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000 }),
  COUNTER_QUEUE_MAX: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000 }),
  CSV_EXPORTS_PER_USER: Type.Integer({ minimum: 1, maximum: 1000, default: 2 }),
  IDEMPOTENCY_TTL_MS: Type.Integer({ minimum: 1000, maximum: 30 * 86_400_000, default: 86_400_000 }),
  CSV_EXPORTS_PER_PROCESS: Type.Integer({ minimum: 1, maximum: 10_000, default: 8 }),
  CSV_SEND_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 30_000 }),
  EVENT_STREAMS_PER_USER: Type.Integer({ minimum: 1, maximum: 10_000, default: 10 }),
  EVENT_STREAMS_PER_PROCESS: Type.Integer({ minimum: 1, maximum: 100_000, default: 1000 }),
  EVENT_STREAM_BUFFER_BYTES: Type.Integer({ minimum: 1024, maximum: 16 * 1024 * 1024, default: 64 * 1024 }),
  OVERLOAD_EVENT_LOOP_DELAY_MS: Type.Integer({ minimum: 0, maximum: 60_000, default: 200 }),
  OVERLOAD_MAX_IN_FLIGHT: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 2048 }),
  OVERLOAD_DATABASE_WAIT_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 1000 }),
  HEADERS_TIMEOUT_MS: Type.Integer({ minimum: 1000, maximum: 600_000, default: 10_000 }),
  KEEP_ALIVE_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600_000, default: 5000 }),
  MAX_CONNECTIONS: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 4096 })
})

type Env = Static<typeof ConfigSchema>

export interface Config {
  port: number
  host: string
  workers: number
  /** DATABASE_URL with DATABASE_PASSWORD (or the _FILE's content) put in; never to be logged. */
  databaseUrl: string | undefined
  databasePoolMax: number
  dataDir: string
  /** 0: a free port chosen at each start. */
  embeddedPostgresPort: number
  redisUrl: string | undefined
  env: Env['NODE_ENV']
  production: boolean
  logLevel: string
  /** Where /metrics is served instead of the API port (undefined: on the API port). */
  metricsPort: number | undefined
  metricsHost: string
  /** One structured line per answered request. */
  accessLog: boolean
  bodyLimitBytes: number
  shutdownTimeoutMs: number
  databaseWaitMs: number
  incrementMaxLagMs: number
  /** How long an increment waits for others to share its commit; kept below incrementMaxLagMs. */
  incrementBatchWindowMs: number
  /** A session ends this long after login... */
  sessionTtlMs: number
  /** ...or this long after its last use, whichever comes first. */
  sessionIdleMs: number
  /** The origin students' phones reach (for the sign-in QR code); unset: the origin of the request. */
  publicUrl: string | undefined
  /** Fastify's trustProxy: none (false), this many hops, or these proxies (comma-separated addresses/CIDRs). */
  trustProxy: false | number | string
  /** Whether the session cookie is Secure: as the scheme the browser used ('auto'), or always/never. */
  cookieSecure: 'auto' | boolean
  /** Login attempts per client address and email. */
  loginLimitPerMinute: number
  /** Login attempts per client address, whatever the email (one address guessing many accounts). */
  loginAddressLimitPerMinute: number
  /** Login attempts per email, whatever the address (many addresses guessing one account). */
  loginEmailLimitPerMinute: number
  /** Registrations per client address (each costs a 32 MiB scrypt). */
  registrationLimitPerMinute: number
  /** Registrations over the whole cluster, from every address together. */
  registrationTotalLimitPerMinute: number
  /** Password changes (right or wrong current password) per user. */
  passwordChangeLimitPerMinute: number
  /** Wrong current passwords in a row after which the session making them is ended. */
  passwordChangeMaxFailures: number
  /** Password hashes computed at once by one process; the rest wait in a queue... */
  passwordHashConcurrency: number
  /** ...of at most this many; beyond it, a fast 503. */
  passwordHashQueueMax: number
  /** Attendance sign-ins per client address and sheet: a classroom behind one NAT address must fit. */
  signInLimitPerMinute: number
  /** Lookups and sign-ins of sheets that do not exist, per client address: ids cannot be enumerated. */
  sheetMissLimitPerMinute: number
  /** PostgreSQL's statement_timeout and idle_in_transaction_session_timeout on every pool connection. */
  databaseStatementTimeoutMs: number
  /**
   * PostgreSQL's lock_timeout, at most the statement timeout: a request waiting on a row lock held
   * elsewhere gives its pooled connection back soon, so one locked row cannot starve every route.
   */
  databaseLockTimeoutMs: number
  /** Increments waiting for their commit in one process; beyond, a fast 503. */
  incrementQueueMax: number
  /** Counter requests waiting for a reservation in one process; beyond, a fast 503. */
  counterQueueMax: number
  /** CSV downloads at once per user (in one process)... */
  csvExportsPerUser: number
  /** How long an Idempotency-Key replays the first answer to its write. */
  idempotencyTtlMs: number
  /** ...and per process; beyond either, 429. */
  csvExportsPerProcess: number
  /** A CSV download whose client reads nothing for this long is ended. */
  csvSendTimeoutMs: number
  /** Open event streams per user (in one process)... */
  eventStreamsPerUser: number
  /** ...and per process; beyond either, 429. */
  eventStreamsPerProcess: number
  /** Unsent output an event stream may hold before it is closed (the page reconnects). */
  eventStreamBufferBytes: number
  /** Event-loop delay past which a replica refuses new requests with 503 (0: no limit). */
  overloadEventLoopDelayMs: number
  /** Requests in progress in one process past which new ones get 503 (0: no limit; streams not counted). */
  overloadMaxInFlight: number
  /** How long the oldest unanswered query may have waited before new requests get 503 (0: no limit). */
  overloadDatabaseWaitMs: number
  /** The longest a client may take to send its request headers. */
  headersTimeoutMs: number
  /** How long an idle kept-alive connection stays open. */
  keepAliveTimeoutMs: number
  /** Open connections per process; beyond, new ones are closed at once. */
  maxConnections: number
  /** Stack traces in 500 answers: only when NODE_ENV=development is set explicitly. */
  exposeErrors: boolean
}

export class ConfigError extends Error {}

/** Parses the environment once; the first bad variable stops start-up, named in the message. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const known = Object.keys(ConfigSchema.properties)
  const given = Object.fromEntries(
    known.filter((name) => env[name] !== undefined && env[name] !== '').map((name) => [name, env[name]])
  )
  const developmentAskedFor = given.NODE_ENV === 'development'
  const value = Value.Convert(ConfigSchema, Value.Default(ConfigSchema, given)) as Env
  const [error] = Value.Errors(ConfigSchema, value)
  if (error) {
    const name = error.instancePath.slice(1) || error.schemaPath
    const shown = secretVariables.has(name) ? '' : `=${JSON.stringify(given[name])}`
    throw new ConfigError(`Invalid environment variable ${name}${shown}: ${error.message}`)
  }
  return {
    port: value.PORT,
    host: value.HOST,
    workers: value.WORKERS,
    databaseUrl: value.DATABASE_URL === undefined ? undefined : databaseUrl(value.DATABASE_URL, databasePassword(value)),
    databasePoolMax: value.DATABASE_POOL_MAX,
    dataDir: value.DATA_DIR,
    embeddedPostgresPort: value.EMBEDDED_POSTGRES_PORT,
    redisUrl: value.REDIS_URL,
    env: value.NODE_ENV,
    production: value.NODE_ENV === 'production',
    logLevel: value.LOG_LEVEL,
    metricsPort: value.METRICS_PORT,
    metricsHost: value.METRICS_HOST,
    accessLog: value.ACCESS_LOG === 'auto' ? value.NODE_ENV === 'production' : value.ACCESS_LOG === 'true',
    bodyLimitBytes: value.BODY_LIMIT_BYTES,
    shutdownTimeoutMs: value.SHUTDOWN_TIMEOUT_MS,
    databaseWaitMs: value.DATABASE_WAIT_MS,
    incrementMaxLagMs: value.INCREMENT_MAX_LAG_MS,
    incrementBatchWindowMs: Math.min(value.INCREMENT_BATCH_WINDOW_MS, Math.floor(value.INCREMENT_MAX_LAG_MS / 2)),
    sessionTtlMs: value.SESSION_TTL_MS,
    sessionIdleMs: value.SESSION_IDLE_MS,
    publicUrl: value.PUBLIC_URL?.replace(/\/$/, ''),
    trustProxy: parseTrustProxy(value.TRUST_PROXY),
    cookieSecure: value.COOKIE_SECURE === 'auto' ? 'auto' : value.COOKIE_SECURE === 'true',
    loginLimitPerMinute: value.LOGIN_LIMIT_PER_MINUTE,
    loginAddressLimitPerMinute: value.LOGIN_ADDRESS_LIMIT_PER_MINUTE,
    loginEmailLimitPerMinute: value.LOGIN_EMAIL_LIMIT_PER_MINUTE,
    registrationLimitPerMinute: value.REGISTRATION_LIMIT_PER_MINUTE,
    registrationTotalLimitPerMinute: value.REGISTRATION_TOTAL_LIMIT_PER_MINUTE,
    passwordChangeLimitPerMinute: value.PASSWORD_CHANGE_LIMIT_PER_MINUTE,
    passwordChangeMaxFailures: value.PASSWORD_CHANGE_MAX_FAILURES,
    passwordHashConcurrency: value.PASSWORD_HASH_CONCURRENCY,
    passwordHashQueueMax: value.PASSWORD_HASH_QUEUE_MAX,
    signInLimitPerMinute: value.ATTENDANCE_SIGNIN_LIMIT_PER_MINUTE,
    sheetMissLimitPerMinute: value.SHEET_MISS_LIMIT_PER_MINUTE,
    databaseStatementTimeoutMs: value.DATABASE_STATEMENT_TIMEOUT_MS,
    databaseLockTimeoutMs: Math.min(value.DATABASE_LOCK_TIMEOUT_MS, value.DATABASE_STATEMENT_TIMEOUT_MS),
    incrementQueueMax: value.INCREMENT_QUEUE_MAX,
    counterQueueMax: value.COUNTER_QUEUE_MAX,
    csvExportsPerUser: value.CSV_EXPORTS_PER_USER,
    idempotencyTtlMs: value.IDEMPOTENCY_TTL_MS,
    csvExportsPerProcess: value.CSV_EXPORTS_PER_PROCESS,
    csvSendTimeoutMs: value.CSV_SEND_TIMEOUT_MS,
    eventStreamsPerUser: value.EVENT_STREAMS_PER_USER,
    eventStreamsPerProcess: value.EVENT_STREAMS_PER_PROCESS,
    eventStreamBufferBytes: value.EVENT_STREAM_BUFFER_BYTES,
    overloadEventLoopDelayMs: value.OVERLOAD_EVENT_LOOP_DELAY_MS,
    overloadMaxInFlight: value.OVERLOAD_MAX_IN_FLIGHT,
    overloadDatabaseWaitMs: value.OVERLOAD_DATABASE_WAIT_MS,
    headersTimeoutMs: value.HEADERS_TIMEOUT_MS,
    keepAliveTimeoutMs: value.KEEP_ALIVE_TIMEOUT_MS,
    maxConnections: value.MAX_CONNECTIONS,
    // The default mode is development, but only a development mode someone asked for shows stacks.
    exposeErrors: developmentAskedFor
  }
}

/** Variables that may hold a password: an error names them and never prints their value. */
const secretVariables = new Set(['DATABASE_URL', 'DATABASE_PASSWORD', 'DATABASE_PASSWORD_FILE', 'REDIS_URL'])

function databasePassword(value: Env): string | undefined {
  if (value.DATABASE_PASSWORD_FILE === undefined) return value.DATABASE_PASSWORD
  try {
    return readFileSync(value.DATABASE_PASSWORD_FILE, 'utf8').replace(/\r?\n$/, '')
  } catch (error) {
    throw new ConfigError(`Invalid environment variable DATABASE_PASSWORD_FILE: cannot read it (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

/**
 * DATABASE_URL checked as postgres.js will read it, with the password set in encoded form when given
 * apart. A password pasted raw breaks the URL at / ? # or @ — either it does not parse, or its rest
 * reads as the path: both fail here, naming the variable and printing nothing of it.
 */
export function databaseUrl(text: string, password: string | undefined): string {
  const invalid = (why: string) => new ConfigError(`Invalid environment variable DATABASE_URL: ${why}; ` +
    'percent-encode / ? # @ : % in its password, or leave the password out and set DATABASE_PASSWORD')
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw invalid('it is not a valid URL')
  }
  if (!url.hostname) throw invalid('it names no host')
  let database: string
  try {
    decodeURIComponent(url.username)
    decodeURIComponent(url.password)
    database = decodeURIComponent(url.pathname.slice(1))
  } catch {
    throw invalid('it holds a % that starts no percent-encoding')
  }
  if (/[@:/]/.test(database)) throw invalid('its database name holds @, : or /')
  if (password !== undefined) url.password = encodeURIComponent(password)
  return url.href
}

function parseTrustProxy(text: string): false | number | string {
  const invalid = (why: string) => new ConfigError(`Invalid environment variable TRUST_PROXY=${JSON.stringify(text)}: ${why}`)
  if (text === 'false') return false
  if (text === 'true') {
    throw invalid('trusting every peer would let each client choose its own address; set the hop count (1 behind one nginx) or the proxy addresses')
  }
  if (/^[0-9]+$/.test(text)) {
    const hops = Number(text)
    if (hops < 1 || hops > 16) throw invalid('a hop count is 1 to 16')
    return hops
  }
  const wrong = text.split(',').find((entry) => {
    const [address, bits, ...rest] = entry.split('/')
    return isIP(address) === 0 || rest.length > 0 || (bits !== undefined && !/^[0-9]{1,3}$/.test(bits))
  })
  if (wrong !== undefined) throw invalid(`${JSON.stringify(wrong)} is not a hop count, an address or a CIDR`)
  return text
}
