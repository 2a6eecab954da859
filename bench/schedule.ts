/**
 * Arrival times of an open workload shaped like Gatling's
 * `rampUsersPerSec(from).to(to).during(ramp)` followed by `constantUsersPerSec(to).during(plateau)`:
 * each arrival is one request, sent at its time whatever the server is doing.
 */
export interface Profile {
  /** Arrivals per second at the start of the ramp. */
  from: number
  /** Arrivals per second at the end of the ramp and during the plateau. */
  to: number
  rampS: number
  plateauS: number
}

/** When the k-th arrival (from 0) is due, in ms from the start, or undefined once the plateau is over. */
export function arrivalMs(profile: Profile, k: number): number | undefined {
  const { from, to, rampS, plateauS } = profile
  const inRamp = ((from + to) / 2) * rampS
  if (k < inRamp) return rampSeconds(profile, k) * 1000
  const seconds = rampS + (k - inRamp) / to
  return seconds < rampS + plateauS ? seconds * 1000 : undefined
}

/** Inverts the ramp's cumulative count N(t) = from·t + (to − from)·t² / (2·ramp). */
function rampSeconds({ from, to, rampS }: Profile, k: number): number {
  const a = (to - from) / (2 * rampS)
  if (a === 0) return k / from
  return (-from + Math.sqrt(from * from + 4 * a * k)) / (2 * a)
}

export function plannedArrivals({ from, to, rampS, plateauS }: Profile): number {
  return Math.ceil(((from + to) / 2) * rampS + to * plateauS)
}

export interface Stream<K> {
  kind: K
  profile: Profile
  next: number
  dueMs: number | undefined
}

export function stream<K>(kind: K, profile: Profile): Stream<K> {
  return { kind, profile, next: 0, dueMs: arrivalMs(profile, 0) }
}

/**
 * Fires every arrival of every stream at its due time (timer granularity: about 1 ms) until all
 * streams are exhausted or the signal aborts. `fire` must not wait for the server.
 */
export function drive<K>(
  streams: Stream<K>[],
  clock: () => number,
  fire: (kind: K, dueMs: number) => void,
  signal: AbortSignal
): Promise<void> {
  return new Promise((resolve) => {
    const tick = () => {
      if (signal.aborted) return resolve()
      fireDue(streams, clock(), fire)
      const next = nextDue(streams)
      if (next === undefined) return resolve()
      setTimeout(tick, Math.max(0, next - clock()))
    }
    tick()
  })
}

function fireDue<K>(streams: Stream<K>[], now: number, fire: (kind: K, dueMs: number) => void) {
  for (const s of streams) {
    while (s.dueMs !== undefined && s.dueMs <= now) {
      fire(s.kind, s.dueMs)
      s.next++
      s.dueMs = arrivalMs(s.profile, s.next)
    }
  }
}

function nextDue<K>(streams: Stream<K>[]): number | undefined {
  const due = streams.map((s) => s.dueMs).filter((ms): ms is number => ms !== undefined)
  return due.length ? Math.min(...due) : undefined
}
