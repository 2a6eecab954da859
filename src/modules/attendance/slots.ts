import type { ServerResponse } from 'node:http'
import { TooManyRequests } from '../../platform/errors.js'

// Nobody knows when a long response ends; a client told to come back soon can simply try again.
const retryAfterSeconds = 5

/**
 * Caps on responses that stay open for long (downloads, event streams) in this process: each user
 * holds at most `perUser` at once and the process at most `perProcess`; beyond either, 429.
 */
export class Slots {
  private readonly byUser = new Map<number, number>()
  private total = 0

  constructor(
    private readonly what: string,
    private readonly perUser: number,
    private readonly perProcess: number
  ) {}

  /** The limit's name in the metrics: `event-streams`, `csv-downloads`. */
  private get limit() {
    return this.what.toLowerCase().replace(/\W+/g, '-')
  }

  /** Takes a slot for the user until `res` closes, whichever way it ends; throws 429 when none is free. */
  hold(userId: number, res: ServerResponse): void {
    // Its client is gone already: 'close' was emitted and would never give the slot back.
    if (res.closed) return
    const held = this.byUser.get(userId) ?? 0
    if (held >= this.perUser) {
      throw new TooManyRequests(
        retryAfterSeconds,
        `at most ${this.perUser} ${this.what} at once per user; retry once one has ended`,
        this.limit
      )
    }
    if (this.total >= this.perProcess) {
      throw new TooManyRequests(
        retryAfterSeconds,
        `this server has ${this.perProcess} ${this.what} open, its most; retry shortly`,
        this.limit
      )
    }
    this.byUser.set(userId, held + 1)
    this.total++
    res.once('close', () => {
      this.total--
      const left = this.byUser.get(userId)! - 1
      if (left === 0) this.byUser.delete(userId)
      else this.byUser.set(userId, left)
    })
  }

  /** Slots held, for the metrics. */
  get size(): number {
    return this.total
  }
}
