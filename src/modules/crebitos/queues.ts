import type { Sql } from '../../db/pool.js'
import { Coalescer } from '../../platform/coalescer.js'
import { applyBatch, applyTransaction } from './queries.js'
import type { NewTransaction } from './schema.js'

/** The client row after the transaction (saldo null: refused); undefined: no such client. */
type Applied = { limite: number; saldo: number | null } | undefined

interface Pending {
  transaction: NewTransaction
  resolve(row: Applied): void
  reject(error: unknown): void
}

interface Queue {
  coalescer: Coalescer<Pending>
  /** Transactions given to this queue and not answered yet: at 0 the queue is dropped. */
  open: number
}

/**
 * One queue per client with transactions in flight on this replica. Transactions of one client
 * wait for each other anyway (the client's row lock orders them until each commit), so a replica
 * sends at most `statementsPerClient` statements per client at a time (CREBITOS_STATEMENTS_PER_CLIENT,
 * 2 by default: the second waits on the row lock inside PostgreSQL and runs the moment the first
 * commits, without a round trip back here), and the transactions that arrived while they ran go
 * together in the next (applyBatch: one round trip, one commit). Alone, a transaction takes the
 * single statement it always took; with no concurrency nothing waits.
 *
 * Other clients are never held up: a lock held on one client's row stalls only its own queue,
 * whose statement then fails on the lock timeout and answers its whole batch 503 (nothing written).
 * The queues hold only requests in flight, so the load-shedding cap (OVERLOAD_MAX_IN_FLIGHT)
 * bounds them, and a queue is dropped once it has nothing left: random client ids leave nothing behind.
 */
export class ClientQueues {
  readonly #queues = new Map<number, Queue>()

  constructor(
    private readonly sql: Sql,
    private readonly statementsPerClient = 2
  ) {}

  /** Applies `transaction` to client `id`: its row after (saldo null: refused), undefined: no such client. */
  apply(id: number, transaction: NewTransaction): Promise<Applied> {
    let queue = this.#queues.get(id)
    if (!queue) {
      const created: Queue = {
        coalescer: new Coalescer<Pending>(
          (batch) => this.#run(id, created, batch),
          (batch, error) => batch.forEach((pending) => pending.reject(error)),
          this.statementsPerClient
        ),
        open: 0
      }
      this.#queues.set(id, (queue = created))
    }
    queue.open += 1
    const { coalescer } = queue
    return new Promise<Applied>((resolve, reject) => coalescer.add({ transaction, resolve, reject }))
  }

  /** One statement for `batch`; once every transaction given to the queue is answered, the queue goes. */
  async #run(id: number, queue: Queue, batch: Pending[]): Promise<void> {
    try {
      await this.#apply(id, batch)
    } finally {
      queue.open -= batch.length
      if (queue.open === 0) this.#queues.delete(id)
    }
  }

  async #apply(id: number, batch: Pending[]): Promise<void> {
    if (batch.length === 1) return batch[0].resolve(await applyTransaction(this.sql, id, batch[0].transaction))
    const applied = await applyBatch(
      this.sql,
      id,
      batch.map((pending) => pending.transaction)
    )
    if (!applied) return batch.forEach((pending) => pending.resolve(undefined))
    const alone: Pending[] = []
    for (const [i, pending] of batch.entries()) {
      const outcome = applied.outcomes[i]
      if ('saldo' in outcome) pending.resolve({ limite: applied.limite, saldo: outcome.saldo })
      else if (outcome.refused === 'limit') pending.resolve({ limite: applied.limite, saldo: null })
      else alone.push(pending)
    }
    // A balance that would leave 32 bits: each such one on its own, for the single statement's answer.
    for (const pending of alone) {
      try {
        pending.resolve(await applyTransaction(this.sql, id, pending.transaction))
      } catch (error) {
        pending.reject(error)
      }
    }
  }
}
