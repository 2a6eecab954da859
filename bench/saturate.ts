import { performance } from 'node:perf_hooks'
import { Pool } from 'undici'

export interface Target {
  method: 'GET' | 'POST'
  /** The path of each request; called once per request so keys can vary. */
  path: (n: number) => string
  body?: (n: number) => string
  headers?: Record<string, string>
  /** Headers of each request beyond `headers` (an Idempotency-Key of its own). */
  headersOf?: (n: number) => Record<string, string>
}

export interface SaturationResult {
  requests: number
  errors: number
  statuses: Record<string, number>
  seconds: number
  perSecond: number
  p50: number
  p99: number
  max: number
}

/**
 * A closed loop: `connections` clients each send their next request as soon as the previous answer
 * is in, for `seconds` (after a warm-up that is not counted). The server is saturated when the
 * connections outnumber what it can overlap; requests per second is then its capacity.
 */
export async function saturate(
  url: string,
  target: Target,
  { connections = 64, seconds = 10, warmupSeconds = 2 } = {}
): Promise<SaturationResult> {
  const pool = new Pool(url, { connections, pipelining: 1, keepAliveTimeout: 30_000 })
  const latencies: number[] = []
  const statuses: Record<string, number> = {}
  let errors = 0
  let sequence = 0
  const warmupEnds = performance.now() + warmupSeconds * 1000
  const ends = warmupEnds + seconds * 1000

  const client = async () => {
    while (performance.now() < ends) {
      const n = sequence++
      const started = performance.now()
      try {
        const res = await pool.request({
          method: target.method,
          path: target.path(n),
          body: target.body?.(n),
          headers: { 'content-type': 'application/json', ...target.headers, ...target.headersOf?.(n) },
          headersTimeout: 10_000,
          bodyTimeout: 10_000
        })
        await res.body.text()
        if (started < warmupEnds) continue
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
        if (res.statusCode >= 400) errors++
        latencies.push(performance.now() - started)
      } catch {
        if (started >= warmupEnds) errors++
      }
    }
  }
  await Promise.all(Array.from({ length: connections }, client))
  await pool.close()
  latencies.sort((a, b) => a - b)
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN
  return {
    requests: latencies.length,
    errors,
    statuses,
    seconds,
    perSecond: latencies.length / seconds,
    p50: at(0.5),
    p99: at(0.99),
    max: latencies.at(-1) ?? NaN
  }
}

export const formatRun = (name: string, r: SaturationResult) =>
  `${name.padEnd(34)} ${r.perSecond.toFixed(0).padStart(7)} req/s   p50 ${r.p50.toFixed(2).padStart(6)} ms   p99 ${r.p99.toFixed(2).padStart(7)} ms   max ${r.max.toFixed(1).padStart(7)} ms   errors ${r.errors}`
