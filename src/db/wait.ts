import { setTimeout as sleep } from 'node:timers/promises'
import type { Sql } from './pool.js'
import type { Logger } from '../platform/logger.js'

/** Retries `select 1` with exponential backoff (capped at 2 s) until the deadline, then throws. */
export async function waitForDatabase(sql: Sql, log: Logger, deadlineMs: number): Promise<void> {
  const started = Date.now()
  for (let attempt = 1, delay = 100; ; attempt++, delay = Math.min(delay * 2, 2000)) {
    try {
      await sql`select 1`
      if (attempt > 1) log.info({ attempt }, 'database reachable')
      return
    } catch (error) {
      const waited = Date.now() - started
      if (waited + delay > deadlineMs) {
        throw new Error(`database not reachable after ${waited} ms: ${(error as Error).message}`, { cause: error })
      }
      log.warn({ attempt, retryInMs: delay, err: (error as Error).message }, 'waiting for the database')
      await sleep(delay)
    }
  }
}
