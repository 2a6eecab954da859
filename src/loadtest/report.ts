import { writeFile } from 'node:fs/promises'
import type { RunResult } from './engine.js'
import { round, type Histogram, type Recorder } from './stats.js'

export interface Latency {
  count: number
  mean: number
  min: number
  p50: number
  p90: number
  p99: number
  p999: number
  max: number
}

export interface GroupFigures {
  total: number
  ok: number
  ko: number
  koReasons: Record<string, number>
  latencyMs: Latency
}

export interface FindMaxStep {
  multiplier: number
  ratePerS: number
  durationS: number
  requests: number
  ko: number
  inconsistencies: number
  p99Ms: number
  held: boolean
  /** Why the step did not hold. */
  verdict: string
}

export interface FindMaxFigures {
  slaMs: number
  /** The ramp to ×1 before the first step: not judged. */
  warmUp: { durationS: number; requests: number; ko: number }
  steps: FindMaxStep[]
  /** The highest arrival rate every check and the SLA held at; 0 when even the first step failed. */
  maxHeldPerS: number
}

/** Every figure of a run, as written to --json and drawn by --html. */
export interface Figures {
  scenario: string
  target: string
  startedAt: string
  model: 'open' | 'closed'
  options: Record<string, unknown>
  checks: string[]
  passed: boolean
  interrupted: boolean
  /** False when the run was interrupted before the final consistency checks. */
  finalChecks: boolean
  requests: {
    total: number
    ok: number
    ko: number
    koReasons: Record<string, number>
    validation: number
    load: number
    /** Open model: what the schedule held (Gatling's count at this scale). */
    plannedLoad: number | undefined
  }
  throughput: { perS: number; loadElapsedS: number }
  latencyMs: Latency
  groups: Record<string, GroupFigures>
  /** The generator's own delay: the scheduled instant to the actual send (open model). */
  generatorLagMs: Latency & { maxAtS: number }
  consistency: { failures: number; byName: Record<string, number>; samples: Array<{ name: string; detail: string }> }
  koSamples: string[]
  maxInFlight: number
  /** One entry per second of the run. */
  series: Array<{ second: number; sent: number; perS: number; ok: number; ko: number; p50Ms: number; p99Ms: number }>
  /** Every answer's latency, by bucket (1 % wide). */
  histogram: Array<{ upToMs: number; count: number }>
  findMax?: FindMaxFigures
}

export function latency(h: Histogram): Latency {
  return {
    count: h.count,
    mean: round(h.mean()),
    min: round(h.count ? h.min : 0),
    p50: round(h.quantile(0.5)),
    p90: round(h.quantile(0.9)),
    p99: round(h.quantile(0.99)),
    p999: round(h.quantile(0.999)),
    max: round(h.max)
  }
}

export interface RunMeta {
  scenario: string
  target: string
  startedAt: Date
  options: Record<string, unknown>
  checks: string[]
}

export function figuresOf(result: RunResult, meta: RunMeta, findMax?: FindMaxFigures): Figures {
  const recorder = result.recorder
  const { ok, ko } = recorder.total()
  const groups = Object.fromEntries([...recorder.groups].map(([name, g]) => [name, groupFigures(g)]))
  // --find-max ends on a KO or a slow step by design: there, holding at least one step is the pass.
  const passed = recorder.failureCount === 0 && !result.interrupted && (findMax ? findMax.maxHeldPerS > 0 : ko === 0)
  return {
    scenario: meta.scenario,
    target: meta.target,
    startedAt: meta.startedAt.toISOString(),
    model: result.model,
    options: meta.options,
    checks: meta.checks,
    passed,
    interrupted: result.interrupted,
    finalChecks: result.finalChecks,
    requests: {
      total: ok + ko,
      ok,
      ko,
      koReasons: koReasons(recorder),
      validation: result.validationRequests,
      load: result.loadRequests,
      plannedLoad: result.plannedLoad
    },
    throughput: {
      perS: round(result.loadRequests / Math.max(0.001, result.loadElapsedMs / 1000)),
      loadElapsedS: round(result.loadElapsedMs / 1000)
    },
    latencyMs: latency(recorder.overall),
    groups,
    generatorLagMs: { ...latency(recorder.lag), maxAtS: round(recorder.maxLagAtMs / 1000) },
    consistency: {
      failures: recorder.failureCount,
      byName: recorder.failuresByName,
      samples: recorder.failures
    },
    koSamples: recorder.koDetails,
    maxInFlight: result.maxInFlight,
    series: recorder.seconds.map((s, second) => ({
      second,
      sent: s.sent,
      perS: s.ok + s.ko,
      ok: s.ok,
      ko: s.ko,
      p50Ms: round(s.latency.quantile(0.5)),
      p99Ms: round(s.latency.quantile(0.99))
    })),
    histogram: recorder.overall.bins(),
    findMax
  }
}

function groupFigures(g: { latency: Histogram; ok: number; ko: number; koReasons: Record<string, number> }) {
  return { total: g.ok + g.ko, ok: g.ok, ko: g.ko, koReasons: g.koReasons, latencyMs: latency(g.latency) }
}

function koReasons(recorder: Recorder): Record<string, number> {
  const reasons: Record<string, number> = {}
  for (const [group, g] of recorder.groups) {
    for (const [reason, n] of Object.entries(g.koReasons)) reasons[`${group}: ${reason}`] = n
  }
  return reasons
}

export async function writeJson(file: string, figures: Figures) {
  await writeFile(file, `${JSON.stringify(figures, null, 2)}\n`)
}

const columns = ['group', 'total', 'OK', 'KO', 'p50', 'p90', 'p99', 'p99.9', 'max'] as const

/** The summary printed at the end: a table per request group, then the verdicts. */
export function summaryText(f: Figures): string {
  const rows = [
    ...Object.entries(f.groups).map(([name, g]) => row(name, g)),
    row('all', { total: f.requests.total, ok: f.requests.ok, ko: f.requests.ko, latencyMs: f.latencyMs })
  ]
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i].length)))
  const line = (cells: readonly string[]) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ')
  const out = [
    '',
    `${f.scenario} against ${f.target}: ${f.model} model${f.interrupted ? ', INTERRUPTED' : ''}`,
    `latency in ms${f.model === 'open' ? ', from each request’s scheduled instant' : ''}`,
    line(columns),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    `requests      ${f.requests.total} (validation ${f.requests.validation}, load ${f.requests.load}${
      f.requests.plannedLoad !== undefined ? ` of ${f.requests.plannedLoad} planned` : ''
    })`,
    `throughput    ${f.throughput.perS} req/s over ${f.throughput.loadElapsedS} s of load; at most ${f.maxInFlight} in flight`
  ]
  if (f.model === 'open') {
    const lag = f.generatorLagMs
    out.push(
      `generator lag p50 ${lag.p50} / p99 ${lag.p99} / max ${lag.max} ms (at ${lag.maxAtS} s): scheduled instant to actual send`
    )
  }
  out.push(`KO            ${f.requests.ko}`)
  for (const [reason, n] of Object.entries(f.requests.koReasons).sort((a, b) => b[1] - a[1]))
    out.push(`  ${String(n).padStart(8)}  ${reason}`)
  for (const sample of f.koSamples.slice(0, 5)) out.push(`            e.g. ${sample}`)
  out.push(
    `consistency   ${f.consistency.failures} failure(s)${f.finalChecks ? '' : ' (final checks not run: interrupted)'}`
  )
  for (const [name, n] of Object.entries(f.consistency.byName)) out.push(`  ${String(n).padStart(8)}  ${name}`)
  for (const sample of f.consistency.samples.slice(0, 5)) out.push(`            e.g. ${sample.name}: ${sample.detail}`)
  if (f.findMax) out.push('', ...findMaxText(f.findMax))
  out.push('', f.passed ? 'PASSED: every check held' : `FAILED${f.interrupted ? ' (interrupted)' : ''}`)
  return out.join('\n')
}

function row(name: string, g: { total: number; ok: number; ko: number; latencyMs: Latency }): string[] {
  const l = g.latencyMs
  return [name, g.total, g.ok, g.ko, l.p50, l.p90, l.p99, l.p999, l.max].map(String)
}

function findMaxText(f: FindMaxFigures): string[] {
  return [
    `find-max (SLA p99 <= ${f.slaMs} ms, no KO, no inconsistency):`,
    `  warm-up, ×0.1 → ×1 over ${f.warmUp.durationS} s (not judged): ${f.warmUp.requests} requests, KO ${f.warmUp.ko}`,
    ...f.steps.map(
      (s) =>
        `  ×${s.multiplier}  ${s.ratePerS} req/s for ${s.durationS} s: ${s.requests} requests, KO ${s.ko}, ` +
        `inconsistent ${s.inconsistencies}, p99 ${s.p99Ms} ms → ${s.held ? 'held' : `NOT held (${s.verdict})`}`
    ),
    `highest rate held: ${f.maxHeldPerS} req/s`
  ]
}
