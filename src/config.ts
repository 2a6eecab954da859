import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { Type, type Static } from 'typebox'
import Value from 'typebox/value'

/** Every variable Tandem reads, with its bounds and default; a value outside them stops start-up. */
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
  METRICS_PORT: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  METRICS_HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  ACCESS_LOG: Type.Union([Type.Literal('auto'), Type.Literal('true'), Type.Literal('false')], { default: 'auto' }),
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info' }),
  BODY_LIMIT_BYTES: Type.Integer({ minimum: 1024, maximum: 100 * 1024 * 1024, default: 64 * 1024 }),
  SHUTDOWN_TIMEOUT_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 10_000 }),
  DATABASE_WAIT_MS: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 60_000 }),
  INCREMENT_MAX_LAG_MS: Type.Integer({ minimum: 1, maximum: 10_000, default: 1000 }),
  INCREMENT_BATCH_WINDOW_MS: Type.Integer({ minimum: 0, maximum: 1000, default: 2 }),
  CREBITOS_STATEMENTS_PER_CLIENT: Type.Integer({ minimum: 1, maximum: 64, default: 2 }),
  SESSION_TTL_MS: Type.Integer({ minimum: 1000, maximum: 90 * 24 * 3_600_000, default: 12 * 3_600_000 }),
  SESSION_IDLE_MS: Type.Integer({ minimum: 1000, maximum: 90 * 24 * 3_600_000, default: 50 * 60_000 }),
  PUBLIC_URL: Type.Optional(Type.String({ pattern: '^https?://[^/\\s]+/?$' })),
  TRUST_PROXY: Type.String({ default: 'false' }),
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

type Variables = Static<typeof ConfigSchema>

/**
 * The settings the modules read, each field declared here alone with what it means: `Config` is this
 * function's return type, so a variable is spelled in the schema above and in its field below only.
 */
function settings(value: Variables, given: Given) {
  return {
    port: value.PORT,
    host: value.HOST,
    workers: value.WORKERS,
    /** DATABASE_URL with DATABASE_PASSWORD (or the _FILE's content) put in; never to be logged. */
    databaseUrl:
      value.DATABASE_URL === undefined ? undefined : databaseUrl(value.DATABASE_URL, databasePassword(value)),
    databasePoolMax: value.DATABASE_POOL_MAX,
    dataDir: value.DATA_DIR,
    /** 0: a free port chosen at each start. */
    embeddedPostgresPort: value.EMBEDDED_POSTGRES_PORT,
    redisUrl: value.REDIS_URL,
    production: value.NODE_ENV === 'production',
    logLevel: value.LOG_LEVEL as string, // a string still: tests and tools make loggers with levels of their own
    /** /metrics on a port of its own (not behind the proxy, not public); undefined: on the API port. */
    metricsPort: value.METRICS_PORT,
    metricsHost: value.METRICS_HOST,
    /** One structured line per answered request at info: by default in production only. */
    accessLog: value.ACCESS_LOG === 'auto' ? value.NODE_ENV === 'production' : value.ACCESS_LOG === 'true',
    bodyLimitBytes: value.BODY_LIMIT_BYTES,
    shutdownTimeoutMs: value.SHUTDOWN_TIMEOUT_MS,
    databaseWaitMs: value.DATABASE_WAIT_MS,
    incrementMaxLagMs: value.INCREMENT_MAX_LAG_MS,
    /** How long an increment waits for others to share its commit; at most half of incrementMaxLagMs. */
    incrementBatchWindowMs: value.INCREMENT_BATCH_WINDOW_MS,
    /** Statements a replica has in flight for one client at most; transactions beyond wait and go together in the next. */
    crebitosStatementsPerClient: value.CREBITOS_STATEMENTS_PER_CLIENT,
    /** A session ends this long after login... */
    sessionTtlMs: value.SESSION_TTL_MS,
    /** ...or this long after its last use, whichever comes first. */
    sessionIdleMs: value.SESSION_IDLE_MS,
    /** The origin students' phones reach (for the sign-in QR code); unset: the origin of the request. */
    publicUrl: value.PUBLIC_URL?.replace(/\/$/, ''),
    /**
     * Fastify's trustProxy: none (false), this many hops, or these proxies (comma-separated addresses/CIDRs).
     * Behind nginx every client has the proxy's address, so X-Forwarded-* is trusted from there. Off by
     * default, since anyone could otherwise claim any address; never "every peer", which would let each
     * client choose the address its limits count.
     */
    trustProxy: parseTrustProxy(value.TRUST_PROXY),
    /** Whether the session cookie is Secure: as the scheme the browser used ('auto'), or always/never. */
    cookieSecure: value.COOKIE_SECURE === 'auto' ? ('auto' as const) : value.COOKIE_SECURE === 'true',
    /** Login attempts per client address and email. */
    loginLimitPerMinute: value.LOGIN_LIMIT_PER_MINUTE,
    /** Login attempts per client address, whatever the email (one address guessing many accounts). */
    loginAddressLimitPerMinute: value.LOGIN_ADDRESS_LIMIT_PER_MINUTE,
    /** Login attempts per email, whatever the address (many addresses guessing one account). */
    loginEmailLimitPerMinute: value.LOGIN_EMAIL_LIMIT_PER_MINUTE,
    /** Registrations per client address (each costs a 32 MiB scrypt). */
    registrationLimitPerMinute: value.REGISTRATION_LIMIT_PER_MINUTE,
    /** Registrations over the whole cluster, from every address together. */
    registrationTotalLimitPerMinute: value.REGISTRATION_TOTAL_LIMIT_PER_MINUTE,
    /** Password changes (right or wrong current password) per user. */
    passwordChangeLimitPerMinute: value.PASSWORD_CHANGE_LIMIT_PER_MINUTE,
    /** Wrong current passwords in a row after which the session making them is ended. */
    passwordChangeMaxFailures: value.PASSWORD_CHANGE_MAX_FAILURES,
    /** Password hashes computed at once by one process; the rest wait in a queue... */
    passwordHashConcurrency: value.PASSWORD_HASH_CONCURRENCY,
    /** ...of at most this many; beyond it, a fast 503. */
    passwordHashQueueMax: value.PASSWORD_HASH_QUEUE_MAX,
    /** Attendance sign-ins per client address and sheet: a classroom behind one NAT address must fit. */
    signInLimitPerMinute: value.ATTENDANCE_SIGNIN_LIMIT_PER_MINUTE,
    /** Lookups and sign-ins of sheets that do not exist, per client address: ids cannot be enumerated. */
    sheetMissLimitPerMinute: value.SHEET_MISS_LIMIT_PER_MINUTE,
    /** PostgreSQL's statement_timeout and idle_in_transaction_session_timeout on every pool connection. */
    databaseStatementTimeoutMs: value.DATABASE_STATEMENT_TIMEOUT_MS,
    /**
     * PostgreSQL's lock_timeout, at most the statement timeout: a request waiting on a row lock held
     * elsewhere gives its pooled connection back soon, so one locked row cannot starve every route.
     */
    databaseLockTimeoutMs: value.DATABASE_LOCK_TIMEOUT_MS,
    /** Increments waiting for their commit in one process; beyond, a fast 503. */
    incrementQueueMax: value.INCREMENT_QUEUE_MAX,
    /** Counter requests waiting for a reservation in one process; beyond, a fast 503. */
    counterQueueMax: value.COUNTER_QUEUE_MAX,
    /** CSV downloads at once per user (in one process)... */
    csvExportsPerUser: value.CSV_EXPORTS_PER_USER,
    /** ...and per process; beyond either, 429. */
    csvExportsPerProcess: value.CSV_EXPORTS_PER_PROCESS,
    /** A CSV download whose client reads nothing for this long is ended. */
    csvSendTimeoutMs: value.CSV_SEND_TIMEOUT_MS,
    /** How long an Idempotency-Key replays the first answer to its write. */
    idempotencyTtlMs: value.IDEMPOTENCY_TTL_MS,
    /** Open event streams per user (in one process)... */
    eventStreamsPerUser: value.EVENT_STREAMS_PER_USER,
    /** ...and per process; beyond either, 429. */
    eventStreamsPerProcess: value.EVENT_STREAMS_PER_PROCESS,
    /** Unsent output an event stream may hold before it is closed (the page reconnects). */
    eventStreamBufferBytes: value.EVENT_STREAM_BUFFER_BYTES,
    /** Event-loop delay past which a replica refuses new requests with 503 (0: no limit). */
    overloadEventLoopDelayMs: value.OVERLOAD_EVENT_LOOP_DELAY_MS,
    /** Requests in progress in one process past which new ones get 503 (0: no limit; streams not counted). */
    overloadMaxInFlight: value.OVERLOAD_MAX_IN_FLIGHT,
    /** How long the oldest unanswered query may have waited before new requests get 503 (0: no limit). */
    overloadDatabaseWaitMs: value.OVERLOAD_DATABASE_WAIT_MS,
    /** The longest a client may take to send its request headers. */
    headersTimeoutMs: value.HEADERS_TIMEOUT_MS,
    /** How long an idle kept-alive connection stays open. */
    keepAliveTimeoutMs: value.KEEP_ALIVE_TIMEOUT_MS,
    /** Open connections per process; beyond, new ones are closed at once. */
    maxConnections: value.MAX_CONNECTIONS,
    /** Stack traces in 500 answers: the default mode is development, but only one someone asked for shows them. */
    exposeErrors: given.NODE_ENV === 'development'
  }
}

export type Config = ReturnType<typeof settings>

/** The variables set (and not empty), as given: what an error message may quote. */
type Given = Partial<Record<keyof Variables, string>>

export class ConfigError extends Error {}

/** Parses the environment once; the first bad variable stops start-up, named in the message. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const given: Given = Object.fromEntries(
    Object.keys(ConfigSchema.properties)
      .filter((name) => env[name] !== undefined && env[name] !== '')
      .map((name) => [name, env[name]])
  )
  const value = Value.Convert(ConfigSchema, Value.Default(ConfigSchema, { ...given })) as Variables
  const [error] = Value.Errors(ConfigSchema, value)
  if (error) throw invalid(error.instancePath.slice(1) || error.schemaPath, given, undefined, error.message)
  checkBounds(value, given)
  return settings(value, given)
}

/**
 * Settings that bound one another are refused, never quietly lowered: what runs is what was asked for.
 * An increment waits up to the batch window before its commit starts, and the commit has to fit in
 * what is left of the lag bound; a lock wait is part of its statement, which the statement timeout ends.
 */
function checkBounds(value: Variables, given: Given) {
  if (value.INCREMENT_BATCH_WINDOW_MS * 2 > value.INCREMENT_MAX_LAG_MS) {
    throw invalid(
      'INCREMENT_BATCH_WINDOW_MS',
      given,
      value.INCREMENT_BATCH_WINDOW_MS,
      `must be at most half of INCREMENT_MAX_LAG_MS (${value.INCREMENT_MAX_LAG_MS})`
    )
  }
  if (value.DATABASE_LOCK_TIMEOUT_MS > value.DATABASE_STATEMENT_TIMEOUT_MS) {
    throw invalid(
      'DATABASE_LOCK_TIMEOUT_MS',
      given,
      value.DATABASE_LOCK_TIMEOUT_MS,
      `must be at most DATABASE_STATEMENT_TIMEOUT_MS (${value.DATABASE_STATEMENT_TIMEOUT_MS})`
    )
  }
}

/** The one-line error naming the variable. */
function invalid(name: string, given: Given, value: unknown, why: string): ConfigError {
  return new ConfigError(
    `Invalid environment variable ${name}${shown(name, given[name as keyof Given], value)}: ${why}`
  )
}

/** The value as given, never one that may hold a secret; the default in effect when it was left unset. */
function shown(name: string, text: string | undefined, value: unknown): string {
  if (secretVariables.has(name)) return ''
  if (text !== undefined) return `=${JSON.stringify(text)}`
  return value === undefined ? '' : ` (default ${String(value)})`
}

/** Variables that may hold a password: an error names them and never prints their value. */
const secretVariables = new Set(['DATABASE_URL', 'DATABASE_PASSWORD', 'DATABASE_PASSWORD_FILE', 'REDIS_URL'])

function databasePassword(value: Variables): string | undefined {
  if (value.DATABASE_PASSWORD_FILE === undefined) return value.DATABASE_PASSWORD
  try {
    return readFileSync(value.DATABASE_PASSWORD_FILE, 'utf8').replace(/\r?\n$/, '')
  } catch (error) {
    throw new ConfigError(
      `Invalid environment variable DATABASE_PASSWORD_FILE: cannot read it (${(error as NodeJS.ErrnoException).code ?? 'error'})`
    )
  }
}

/**
 * DATABASE_URL checked as postgres.js will read it, with the password set in encoded form when given
 * apart. A password pasted raw breaks the URL at / ? # or @ — either it does not parse, or its rest
 * reads as the path: both fail here, naming the variable and printing nothing of it.
 */
export function databaseUrl(text: string, password: string | undefined): string {
  const invalid = (why: string) =>
    new ConfigError(
      `Invalid environment variable DATABASE_URL: ${why}; ` +
        'percent-encode / ? # @ : % in its password, or leave the password out and set DATABASE_PASSWORD'
    )
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
  const invalid = (why: string) =>
    new ConfigError(`Invalid environment variable TRUST_PROXY=${JSON.stringify(text)}: ${why}`)
  if (text === 'false') return false
  if (text === 'true') {
    throw invalid(
      'trusting every peer would let each client choose its own address; set the hop count (1 behind one nginx) or the proxy addresses'
    )
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
