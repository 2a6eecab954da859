import postgres from 'postgres'

export type Sql = postgres.Sql

export interface PoolOptions {
  max?: number
  /** Seconds to wait for a connection before the query fails (so a dead database answers fast). */
  connectTimeout?: number
}

/** One pool per process. Timestamps come back in UTC; statements are prepared once per connection. */
export function createSql(url: string, { max = 10, connectTimeout = 3 }: PoolOptions = {}): Sql {
  return postgres(url, {
    max,
    connect_timeout: connectTimeout,
    idle_timeout: 60,
    prepare: true,
    onnotice: () => {},
    connection: { application_name: 'tandem', TimeZone: 'UTC' }
  })
}

/** Errors that mean "the database is not there right now" rather than "this request is wrong". */
export function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const code = (error as { code?: string }).code ?? ''
  return (
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED'].includes(code) ||
    code.startsWith('08') || // connection exception
    code === '57P01' || code === '57P02' || code === '57P03' || // admin/crash shutdown, cannot connect now
    code === '53300' // too many connections
  )
}
