import { Redis } from 'ioredis'
import type { Logger } from '../platform/logger.js'

export type { Redis }

/**
 * One long-lived connection per process. Commands fail at once while it is down (no offline queue,
 * a short command timeout) so callers answer 503 fast; it reconnects by itself in the background.
 */
export function createRedis(url: string, log: Logger): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: 1000,
    connectTimeout: 2000,
    enableAutoPipelining: true,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000)
  })
  let down = false
  redis.on('error', (error: Error) => {
    if (!down) log.warn({ err: error.message }, 'redis unavailable; reconnecting')
    down = true
  })
  redis.on('ready', () => {
    if (down) log.info('redis reachable again')
    down = false
  })
  return redis
}

/** Errors that mean Redis is not there right now. */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  return (
    error.name === 'MaxRetriesPerRequestError' ||
    /enableOfflineQueue|Connection is closed|Command timed out|ECONNREFUSED|ECONNRESET/.test(error.message)
  )
}
