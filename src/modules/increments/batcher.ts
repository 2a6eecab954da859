import { isClientDataError, isTimeout, sqlState, type Sql } from '../../db/pool.js'
import { Unavailable } from '../../platform/errors.js'

interface Pending {
  key: string
  value: number
  /** performance.now(): deadlines are durations from the arrival, which a clock step (NTP) must not move. */
  arrivedAt: number
  /** Part of a statement on its way to PostgreSQL (or of a flight about to re-run it). */
  sent: boolean
  resolve(total: number): void
  reject(error: unknown): void
}

/** A batch on its way: a slot of the few allowed at once. `soloKey`: the batch of a contended key. */
interface Flight {
  startedAt: number
  soloKey?: string
}

export type Refusal = 'queue-full' | 'deadline'

export interface BatcherOptions {
  /** How long the first increment of a batch waits for company; 0: only those that arrive meanwhile. */
  windowMs: number
  /** Increments waiting or in flight at most (INCREMENT_QUEUE_MAX); beyond, refused at once. */
  queueMax: number
  /** The longest an increment waits to be sent to PostgreSQL (INCREMENT_MAX_LAG_MS); past it, refused. */
  maxLagMs: number
  /** The longest a batch waits for a row lock (at most DATABASE_LOCK_TIMEOUT_MS; less when maxLagMs asks). */
  lockTimeoutMs: number
  onCommit?(size: number, keys: number): void
  onRefuse?(reason: Refusal, count: number): void
}

export interface IncrementBatcher {
  add(key: string, value: number): Promise<number>
  /** Milliseconds the oldest increment not yet committed has waited (0 when none). */
  lagMs(): number
  /** Increments waiting or in flight. */
  size(): number
}

// Enough for a batch stuck on a lock not to hold up the rest, few enough to leave most of the pool
// to the other routes; keys are sorted in every upsert, so concurrent batches cannot deadlock.
const maxFlights = 4
const lockNotAvailable = '55P03'
const refusals: Record<Refusal, string> = {
  'queue-full': 'too many increments waiting, retry shortly',
  deadline: 'the increment could not be committed in time, retry shortly'
}

/**
 * Increments that arrive together become one upsert, summed per key, committed durably before any
 * of them is answered: an acknowledged increment is in PostgreSQL, whatever dies next. The upsert
 * adds to the stored total under the row lock (never read-modify-write in the process), so any
 * number of replicas sum exactly.
 *
 * Every increment is sent within maxLagMs of its arrival or refused (503, nothing written); the pool
 * cancels a statement DATABASE_STATEMENT_TIMEOUT_MS after it is sent (it rolls back, refused too),
 * so an acknowledgement never comes later than the sum of both after the arrival.
 *
 * Batches go one at a time while they commit promptly (the batching factor comes from the commit
 * latency); one running longer than staleMs no longer holds the next back, up to maxFlights. A row
 * locked elsewhere fails its statement after lockTimeoutMs instead of the statement timeout (a batch
 * of several keys, which holds its other rows meanwhile, after half of staleMs); the batch re-runs
 * key by key so the other keys commit, and the locked key (contended) goes on in batches of its own,
 * retried until its increments' deadlines, kept apart from the other keys until it commits or goes
 * quiet.
 */
export function incrementBatcher(sql: Sql, options: BatcherOptions): IncrementBatcher {
  const { windowMs, queueMax, maxLagMs, onCommit, onRefuse } = options
  // A batch commits in milliseconds; one still running after a tenth of the lag budget is waiting on
  // something (a lock, a slow disk), and the increments behind it should not wait with it.
  const staleMs = Math.max(windowMs, Math.floor(maxLagMs / 10))
  // Several attempts fit in one increment's maxLagMs; far above the few milliseconds another
  // batch holds a row until its commit.
  const lockTimeoutMs = Math.max(1, Math.min(Math.floor(maxLagMs / 4), options.lockTimeoutMs))
  // A batch of several keys holds the rows it has upserted while it waits on a locked one: the other
  // keys' batches (of this replica, once it goes stale, and of the others) queue on those rows, and
  // fail in turn. It waits no longer than half of staleMs, far above the milliseconds one batch holds
  // a row until its commit; then its keys re-run apart, each with the whole lockTimeoutMs.
  const sharedLockTimeoutMs = Math.max(1, Math.min(Math.floor(staleMs / 2), lockTimeoutMs))
  // Insertion order is arrival order: the first one is the oldest (requeued ones keep their place).
  const unsettled = new Set<Pending>()
  const flights = new Set<Flight>()
  /** Keys whose row was found locked, with when it last was. */
  const contended = new Map<string, number>()
  // A lock held elsewhere is often held for a while: until its batch commits, or until it has had no
  // increments for this long since it was last found locked, a key stays apart from the others.
  const forgetContendedMs = 10 * maxLagMs
  let wakeTimer: NodeJS.Timeout | undefined
  let wakeAt = Infinity

  function refuse(members: Pending[], reason: Refusal) {
    if (members.length === 0) return
    for (const member of members) member.reject(new Unavailable(refusals[reason]))
    onRefuse?.(reason, members.length)
  }

  const sendable = (member: Pending, now: number) => now < member.arrivedAt + maxLagMs
  const freshFlight = (now: number) =>
    [...flights].find((flight) => !flight.soloKey && now - flight.startedAt < staleMs)

  function expire(now: number) {
    const late: Pending[] = []
    for (const member of unsettled) {
      if (sendable(member, now)) break
      if (!member.sent) late.push(member)
    }
    refuse(late, 'deadline')
  }

  function launch(members: Pending[], now: number, soloKey?: string) {
    const flight: Flight = { startedAt: now, soloKey }
    flights.add(flight)
    for (const member of members) member.sent = true
    void commit(members)
      .catch((error: unknown) => {
        for (const member of members) member.reject(error)
      })
      .finally(() => {
        flights.delete(flight)
        pump(true)
      })
  }

  /** `waited`: a batch just ended, so what queued behind it has had its window already. */
  function launchBatches(now: number, waited: boolean) {
    const flying = new Set([...flights].map((flight) => flight.soloKey))
    const soloSlots = () => maxFlights - 1 - flights.size
    const soloKeys = [...contended.keys()].filter((key) => !flying.has(key))
    const normalAllowed = flights.size < maxFlights && !freshFlight(now)
    if (!normalAllowed && (soloKeys.length === 0 || soloSlots() <= 0)) return

    const normal: Pending[] = []
    const solo = new Map<string, Pending[]>()
    const present = new Set<string>()
    for (const member of unsettled) {
      if (contended.has(member.key)) present.add(member.key)
      if (member.sent) continue
      if (!contended.has(member.key)) normal.push(member)
      else if (!flying.has(member.key)) appendTo(solo, member)
    }
    for (const [key, lockedAt] of contended) {
      if (!present.has(key) && now - lockedAt > forgetContendedMs) contended.delete(key)
    }
    for (const [key, members] of solo) {
      if (soloSlots() <= 0) break
      launch(members, now, key)
    }
    if (
      normalAllowed &&
      flights.size < maxFlights &&
      normal.length > 0 &&
      (waited || normal[0].arrivedAt + windowMs <= now)
    ) {
      launch(normal, now)
    }
  }

  /** When something may next be due without an event: a window, a flight going stale, a deadline. */
  function nextWake(now: number): number {
    let at = Infinity
    let oldestNormal: Pending | undefined
    for (const member of unsettled) {
      if (member.sent) continue
      at = Math.min(at, member.arrivedAt + maxLagMs)
      if (!contended.has(member.key)) {
        oldestNormal = member
        break
      }
    }
    if (oldestNormal && flights.size < maxFlights) {
      const fresh = freshFlight(now)
      at = Math.min(at, fresh ? fresh.startedAt + staleMs : oldestNormal.arrivedAt + windowMs)
    }
    return at
  }

  function wake(at: number) {
    if (at === Infinity || (wakeTimer && wakeAt <= at)) return
    clearTimeout(wakeTimer)
    wakeAt = at
    wakeTimer = setTimeout(
      () => {
        wakeTimer = undefined
        wakeAt = Infinity
        pump()
      },
      Math.max(0, at - performance.now())
    )
  }

  function pump(waited = false) {
    const now = performance.now()
    expire(now)
    launchBatches(now, waited)
    wake(nextWake(now))
  }

  /**
   * Sends `members` as one statement and settles every one of them, re-running what it can; answers
   * whether they went back to the queue instead (their key is locked elsewhere).
   */
  async function commit(members: Pending[]): Promise<'settled' | 'requeued'> {
    const now = performance.now()
    refuse(
      members.filter((member) => !sendable(member, now)),
      'deadline'
    )
    const batch = members.filter((member) => sendable(member, now))
    if (batch.length === 0) return 'settled'
    const keys = new Set(batch.map((member) => member.key)).size
    let rows: Array<{ ordinal: number; total: string }>
    try {
      rows = await upsert(sql, batch, keys > 1 ? sharedLockTimeoutMs : lockTimeoutMs)
    } catch (error) {
      return recover(batch, error)
    }
    for (const { ordinal, total } of rows) batch[ordinal - 1].resolve(Number(total))
    // A member PostgreSQL did not answer for must not wait forever.
    const unanswered = batch.filter((member) => unsettled.has(member))
    for (const member of unanswered) member.reject(new Error('the upsert did not answer for every increment'))
    onCommit?.(batch.length, keys)
    if (keys === 1) contended.delete(batch[0].key)
    return 'settled'
  }

  async function recover(batch: Pending[], error: unknown): Promise<'settled' | 'requeued'> {
    const byKey = groupByKey(batch)
    // One request's data must not fail the others: each re-runs alone, in order within its key.
    if (isClientDataError(error) && batch.length > 1) {
      await Promise.all(
        [...byKey.values()].map(async (members) => {
          for (const [index, member] of members.entries()) {
            if ((await commit([member])) === 'requeued') return requeue(members.slice(index + 1))
          }
        })
      )
      return 'settled'
    }
    if (sqlState(error) === lockNotAvailable) {
      if (byKey.size === 1) {
        contended.set(batch[0].key, performance.now())
        requeue(batch)
        return 'requeued'
      }
      await Promise.all([...byKey.values()].map((members) => commit(members)))
      return 'settled'
    }
    // The statement ran out of time and rolled back.
    if (isTimeout(error)) refuse(batch, 'deadline')
    else for (const member of batch) member.reject(error)
    return 'settled'
  }

  function requeue(members: Pending[]) {
    for (const member of members) member.sent = false
    pump()
  }

  return {
    add(key, value) {
      if (unsettled.size >= queueMax) {
        onRefuse?.('queue-full', 1)
        return Promise.reject(new Unavailable(refusals['queue-full']))
      }
      return new Promise<number>((resolve, reject) => {
        const arrivedAt = performance.now()
        const member: Pending = {
          key,
          value,
          arrivedAt,
          sent: false,
          resolve(total) {
            if (unsettled.delete(member)) resolve(total)
          },
          reject(error) {
            if (unsettled.delete(member)) reject(error)
          }
        }
        unsettled.add(member)
        const launchable = flights.size < maxFlights && (contended.has(key) || !freshFlight(arrivedAt))
        wake(launchable ? arrivedAt + windowMs : arrivedAt + maxLagMs)
      })
    },
    lagMs() {
      const oldest = unsettled.values().next().value
      return oldest ? performance.now() - oldest.arrivedAt : 0
    },
    size: () => unsettled.size
  }
}

function groupByKey(members: Pending[]): Map<string, Pending[]> {
  const byKey = new Map<string, Pending[]>()
  for (const member of members) appendTo(byKey, member)
  return byKey
}

function appendTo(byKey: Map<string, Pending[]>, member: Pending) {
  const members = byKey.get(member.key)
  if (members) members.push(member)
  else byKey.set(member.key, [member])
}

/**
 * One upsert for the batch, summed per key as PostgreSQL stores the key (a JS string PostgreSQL
 * cannot hold as given, e.g. a lone surrogate, arrives as a different text, and two such strings may
 * be one key), answering for each member by its ordinal the key's total right after that member:
 * the new total less the members after it. Keys go in sorted order so two batches cannot deadlock.
 */
function upsert(sql: Sql, batch: Pending[], lockTimeoutMs: number) {
  // set_config in the rows' filter runs before the first row is inserted, so it bounds every row
  // lock wait of this statement (the implicit transaction ends with it).
  return sql<{ ordinal: number; total: string }[]>`
    with input as (
      select key, value, ordinal::int
        from unnest(${sql.array(batch.map((member) => member.key))}::text[],
                    ${sql.array(batch.map((member) => String(member.value)))}::bigint[]) with ordinality as t (key, value, ordinal)
    ), upserted as (
      insert into increments as i (key, value)
      select key, sum(value) from input
       where set_config('lock_timeout', ${String(lockTimeoutMs)}, true) <> ''
       group by key
       order by key
      on conflict (key) do update set value = i.value + excluded.value, updated_at = now()
      returning key, value
    )
    select input.ordinal,
           upserted.value - coalesce(sum(input.value) over (partition by input.key order by input.ordinal
                                                             rows between 1 following and unbounded following), 0) as total
      from input join upserted on upserted.key = input.key`
}
