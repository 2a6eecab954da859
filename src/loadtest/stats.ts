import type { ConsistencyFailure } from './scenario.js'

const lowestMs = 0.01
const growth = 1.01
const logGrowth = Math.log(growth)

/**
 * Latencies counted in log-spaced buckets 1 % wide from 10 µs up, the way HdrHistogram does with
 * two significant digits: a percentile is off by at most 1 %, and memory is bounded by the number of
 * buckets a run can touch (about 1 600 between 10 µs and 100 s), however long it runs. Exact arrays
 * would do for one 4× Rinha run (245 520 doubles, 2 MB), but not for the per-second series, long
 * closed-model runs or --find-max at high rates; a dependency for these 50 lines is not worth it.
 */
export class Histogram {
  private readonly buckets = new Map<number, number>()
  count = 0
  max = 0
  min = Infinity
  sum = 0

  record(ms: number) {
    const value = Math.max(0, ms)
    const index = value <= lowestMs ? 0 : Math.ceil(Math.log(value / lowestMs) / logGrowth)
    this.buckets.set(index, (this.buckets.get(index) ?? 0) + 1)
    this.count++
    this.sum += value
    if (value > this.max) this.max = value
    if (value < this.min) this.min = value
  }

  merge(other: Histogram) {
    for (const [index, n] of other.buckets) this.buckets.set(index, (this.buckets.get(index) ?? 0) + n)
    this.count += other.count
    this.sum += other.sum
    this.max = Math.max(this.max, other.max)
    this.min = Math.min(this.min, other.min)
  }

  /** The value at quantile `q` (0.99 for p99): the upper bound of its bucket, never above the maximum. */
  quantile(q: number): number {
    if (this.count === 0) return 0
    const rank = Math.max(1, Math.ceil(q * this.count))
    let seen = 0
    for (const index of [...this.buckets.keys()].sort((a, b) => a - b)) {
      seen += this.buckets.get(index)!
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, upperBound(index)))
    }
    return this.max
  }

  mean(): number {
    return this.count ? this.sum / this.count : 0
  }

  /** Non-empty buckets, by upper bound in ms. */
  bins(): Array<{ upToMs: number; count: number }> {
    return [...this.buckets]
      .sort((a, b) => a[0] - b[0])
      .map(([index, count]) => ({ upToMs: round(upperBound(index)), count }))
  }
}

function upperBound(index: number): number {
  return lowestMs * growth ** index
}

export function round(ms: number, digits = 2): number {
  const f = 10 ** digits
  return Math.round(ms * f) / f
}

export interface GroupStats {
  latency: Histogram
  ok: number
  ko: number
  koReasons: Record<string, number>
}

export interface SecondStats {
  /** Requests sent (open model: scheduled) in this second. */
  sent: number
  ok: number
  ko: number
  latency: Histogram
}

export interface Sample {
  group: string
  ok: boolean
  reason?: string
  detail?: string
  latencyMs: number
  /** When the answer came, in ms from the run's start: which second of the series it counts in. */
  atMs: number
}

const keptDetails = 20
const keptFailures = 100

/** Every figure of a run, in bounded memory: per group, overall, per second, and the generator's lag. */
export class Recorder {
  readonly groups = new Map<string, GroupStats>()
  readonly overall = new Histogram()
  /** ms between an arrival's scheduled instant and its actual send (open model). */
  readonly lag = new Histogram()
  readonly seconds: SecondStats[] = []
  readonly koDetails: string[] = []
  readonly failures: ConsistencyFailure[] = []
  readonly failuresByName: Record<string, number> = {}
  failureCount = 0
  maxLagAtMs = 0

  /** `parent` also gets every sample, `offsetMs` later on its timeline (--find-max's steps). */
  constructor(
    private readonly parent?: Recorder,
    private readonly offsetMs = 0
  ) {}

  record(sample: Sample) {
    const group = this.group(sample.group)
    group.latency.record(sample.latencyMs)
    this.overall.record(sample.latencyMs)
    const second = this.second(sample.atMs)
    second.latency.record(sample.latencyMs)
    if (sample.ok) {
      group.ok++
      second.ok++
    } else {
      const reason = sample.reason ?? 'ko'
      group.ko++
      second.ko++
      group.koReasons[reason] = (group.koReasons[reason] ?? 0) + 1
      if (this.koDetails.length < keptDetails)
        this.koDetails.push(`${sample.group}: ${reason}${sample.detail ? ` (${sample.detail})` : ''}`)
    }
    this.parent?.record({ ...sample, atMs: sample.atMs + this.offsetMs })
  }

  sent(atMs: number, lagMs?: number) {
    this.second(atMs).sent++
    if (lagMs !== undefined) {
      this.lag.record(lagMs)
      if (lagMs >= this.lag.max) this.maxLagAtMs = atMs
    }
    this.parent?.sent(atMs + this.offsetMs, lagMs)
  }

  inconsistency(failure: ConsistencyFailure) {
    this.failureCount++
    this.failuresByName[failure.name] = (this.failuresByName[failure.name] ?? 0) + 1
    if (this.failures.length < keptFailures) this.failures.push(failure)
    this.parent?.inconsistency(failure)
  }

  total(): { ok: number; ko: number } {
    let ok = 0
    let ko = 0
    for (const g of this.groups.values()) {
      ok += g.ok
      ko += g.ko
    }
    return { ok, ko }
  }

  private group(name: string): GroupStats {
    let group = this.groups.get(name)
    if (!group) {
      group = { latency: new Histogram(), ok: 0, ko: 0, koReasons: {} }
      this.groups.set(name, group)
    }
    return group
  }

  private second(atMs: number): SecondStats {
    const index = Math.max(0, Math.floor(atMs / 1000))
    while (this.seconds.length <= index) this.seconds.push({ sent: 0, ok: 0, ko: 0, latency: new Histogram() })
    return this.seconds[index]
  }
}
