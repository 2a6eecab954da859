const pollMs = 15_000
// After the stream fails, the list is polled and the stream tried again: 15 s later, then twice as long each time.
const firstRetryMs = 15_000
const longestRetryMs = 5 * 60_000

/** 'paused' and 'closed' are the owner's: it stops the updates while students are picked or the sheet is closed. */
export type RefreshMode = 'live' | 'poll' | 'paused' | 'closed'

/**
 * Keeps the list current while the sheet is open: server-sent events, or a 15 s poll while they fail.
 * A stream can be refused (the server's cap on streams, 429) or cut (the page fell behind, the server
 * went away, the session ended): the page polls meanwhile and opens a stream again later, waiting
 * longer after each failure. At most one EventSource and one timer exist at a time, and neither
 * survives stop().
 */
export class LiveUpdates {
  private source: EventSource | null = null
  private timer: number | null = null
  private active = false
  private retryMs = firstRetryMs
  private retryAt = 0

  constructor(
    private readonly eventsUrl: string,
    private readonly onChange: (reason: string) => Promise<void>,
    private readonly showMode: (mode: RefreshMode) => void
  ) {}

  start(): void {
    if (this.active) return
    this.active = true
    this.showMode('poll')
    if (this.mayListen()) this.listen()
    else this.schedulePoll()
  }

  stop(): void {
    this.active = false
    this.source?.close()
    this.source = null
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  /** After a manual refresh the next poll waits a full period again. */
  restartPoll(): void {
    if (this.timer !== null) this.schedulePoll()
  }

  private mayListen(): boolean {
    return typeof EventSource !== 'undefined' && Date.now() >= this.retryAt
  }

  private listen(): void {
    const source = new EventSource(this.eventsUrl)
    this.source = source
    // Changes between the last load and the stream opening would be missed: reload once it is open.
    source.addEventListener('open', () => {
      this.retryMs = firstRetryMs
      this.showMode('live')
      void this.onChange('connected')
    })
    source.addEventListener('change', (event) => {
      void this.onChange(reasonOf(event as MessageEvent<string>))
    })
    source.addEventListener('error', () => {
      if (this.source !== source) return
      source.close()
      this.source = null
      this.retryAt = Date.now() + this.retryMs
      this.retryMs = Math.min(this.retryMs * 2, longestRetryMs)
      this.showMode('poll')
      this.schedulePoll()
    })
  }

  private schedulePoll(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = window.setTimeout(async () => {
      this.timer = null
      // A poll that meets an ended session (401) leaves for the login page.
      await this.onChange('poll')
      // Stopped meanwhile, or restarted (which set a timer or a stream of its own): nothing to schedule.
      if (!this.active || this.source !== null || this.timer !== null) return
      if (this.mayListen()) this.listen()
      else this.schedulePoll()
    }, pollMs)
  }
}

function reasonOf(event: MessageEvent<string>): string {
  try {
    const data: unknown = JSON.parse(event.data)
    return typeof data === 'object' && data !== null && typeof (data as { reason?: unknown }).reason === 'string'
      ? (data as { reason: string }).reason
      : 'change'
  } catch {
    return 'change'
  }
}
