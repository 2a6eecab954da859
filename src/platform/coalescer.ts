/**
 * At most `maxRuns` runs at a time (one by default) over what has arrived: items that come while
 * every run is in flight wait for the next, which takes them all at once. The batching of the
 * cluster counter (one reservation for every request that came during the last), of a Rinha
 * client's transactions (crebitos/queues.ts) and of the sheet page's list (one more load for every
 * change announced during the last). No Node or DOM API: the server and the web page share it.
 */
export class Coalescer<T> {
  #waiting: T[] = []
  #running = 0

  /**
   * `run` settles its batch; should it throw, `fail` is given the batch and the error instead, so no
   * item is left waiting for an answer that will not come.
   */
  constructor(
    private readonly run: (batch: T[]) => Promise<void>,
    private readonly fail: (batch: T[], error: unknown) => void,
    private readonly maxRuns = 1
  ) {}

  /** The items waiting for the next run. */
  get waiting(): readonly T[] {
    return this.#waiting
  }

  add(item: T): void {
    this.#waiting.push(item)
    if (this.#running < this.maxRuns) void this.#drain()
  }

  /** Takes out of the queue the waiting items `which` picks (all by default): expired ones, say. */
  take(which: (item: T) => boolean = () => true): T[] {
    const taken = this.#waiting.filter(which)
    this.#waiting = this.#waiting.filter((item) => !which(item))
    return taken
  }

  async #drain(): Promise<void> {
    this.#running += 1
    while (this.#waiting.length > 0) {
      const batch = this.#waiting
      this.#waiting = []
      try {
        await this.run(batch)
      } catch (error) {
        this.fail(batch, error)
      }
    }
    this.#running -= 1
  }
}
