import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Kind, LoadResult } from './load.js'
import type { ServerReport } from './processes.js'

export interface RunContext {
  startedAt: Date
  code: string
  options: { rate: number; durationScale: number; timeoutMs: number; connections: number; poolMax: number }
  topology: string
  description: string
  pinning: string
  plateauTargetPerS: number
  server: ServerReport | undefined
  /** Server processes that died, and other oddities of the server side. */
  warnings: string[]
}

interface Latency {
  n: number
  p50: number
  p99: number
  max: number
}

export type Summary = ReturnType<typeof summarize>

/** Schedule lag past this means the driver, not the server, delayed requests. */
const lagWarningMs = 20

export function summarize(result: LoadResult, context: RunContext) {
  const kinds = Object.keys(result.tallies) as Kind[]
  const plateauResponses = kinds.reduce((sum, kind) => sum + result.tallies[kind].plateauResponses, 0)
  const lag = latency(result.lags)
  return {
    startedAt: context.startedAt.toISOString(),
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      node: process.version,
      memoryMb: Math.round(os.totalmem() / 2 ** 20)
    },
    code: context.code,
    options: context.options,
    topology: { name: context.topology, description: context.description, pinning: context.pinning },
    requests: {
      planned: result.planned,
      sent: result.sent,
      completed: result.completed,
      statuses: mergeCounts(kinds.map((kind) => result.tallies[kind].statuses)),
      statusesByKind: Object.fromEntries(kinds.map((kind) => [kind, result.tallies[kind].statuses]))
    },
    throughput: {
      overallPerS: round(result.completed / (result.elapsedMs / 1000)),
      plateauPerS: round(plateauResponses / (result.plateauMs / 1000)),
      plateauTargetPerS: context.plateauTargetPerS
    },
    errors: { total: result.findings.errorCount(), ...result.findings.errors },
    inconsistencies: { total: result.findings.inconsistencyCount(), ...result.findings.inconsistencies },
    finalBalances: result.finalBalances,
    latencyMs: latencies(result, kinds, 'latencies'),
    serviceLatencyMs: latencies(result, kinds, 'serviceLatencies'),
    driver: {
      maxScheduleLagMs: lag.max,
      maxScheduleLagAtS: round(result.maxLagAtMs / 1000),
      p99ScheduleLagMs: lag.p99,
      fellBehind: lag.max > lagWarningMs,
      sentOver20MsLate: result.lags.filter((ms) => ms > lagWarningMs).length,
      maxInFlight: result.maxInFlight,
      cpuPercentOfOneCore: round(result.driverCpuPercent)
    },
    server: context.server && serverSummary(context.server),
    samples: result.findings.samples,
    warnings: context.warnings
  }
}

function serverSummary(server: ServerReport) {
  const mb = (kb: number) => round(kb / 1024)
  return {
    peakTotalRssMb: mb(server.peakTotalRssKb),
    endPssTotalMb: mb(server.endPssTotalKb),
    cpuS: {
      server: round(server.cpuTotalS),
      driver: round(server.driverCpuS),
      // Anything else busy on the machine meanwhile (other tests, the system) shares the cores.
      others: round(Math.max(0, server.machineBusyS - server.cpuTotalS - server.driverCpuS)),
      wall: round(server.wallS)
    },
    byKind: Object.fromEntries(
      Object.entries(server.byKind).map(([kind, k]) => [
        kind,
        { processes: k.processes, peakRssMb: mb(k.peakRssKb), endPssMb: mb(k.endPssKb), cpuS: round(k.cpuS) }
      ])
    ),
    processes: server.processes
      .sort((a, b) => a.kind.localeCompare(b.kind) || b.peakRssKb - a.peakRssKb)
      .map((p) => ({
        pid: p.pid,
        kind: p.kind,
        label: p.label,
        peakRssMb: mb(p.peakRssKb),
        hwmMb: mb(p.hwmKb),
        endPssMb: p.endPssKb === undefined ? undefined : mb(p.endPssKb),
        cpuS: round(p.cpuS)
      })),
    samples: server.samples
  }
}

function latencies(
  result: LoadResult,
  kinds: Kind[],
  field: 'latencies' | 'serviceLatencies'
): Record<'all' | Kind, Latency> {
  const byKind = kinds.map((kind) => [kind, latency(result.tallies[kind][field])])
  return { all: latency(kinds.flatMap((kind) => result.tallies[kind][field])), ...Object.fromEntries(byKind) }
}

function latency(values: number[]): Latency {
  if (values.length === 0) return { n: 0, p50: 0, p99: 0, max: 0 }
  const sorted = Float64Array.from(values).sort()
  const at = (q: number) => round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)])
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), max: round(sorted[sorted.length - 1]) }
}

function mergeCounts(counts: Record<string, number>[]): Record<string, number> {
  const merged: Record<string, number> = {}
  for (const count of counts) for (const [key, n] of Object.entries(count)) merged[key] = (merged[key] ?? 0) + n
  return merged
}

function round(value: number): number {
  return Math.round(value * 100) / 100
}

export function printSummary(s: Summary, file: string) {
  const line = (label: string, text: string) => console.log(`${label.padEnd(14)}${text}`)
  const counts = (record: Record<string, number>) =>
    Object.entries(record)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')
  console.log('\n==================== Rinha 2024/Q1 crebitos benchmark ====================')
  line('machine', `${s.machine.cpu}, ${s.machine.cores} cores, ${s.machine.memoryMb} MB, node ${s.machine.node}`)
  line('code', s.code)
  line('topology', `${s.topology.name}: ${s.topology.description}`)
  line('pinning', s.topology.pinning)
  line(
    'load',
    `rate ×${s.options.rate}, duration ×${s.options.durationScale}, timeout ${s.options.timeoutMs} ms, ≤ ${s.options.connections} connections`
  )
  line('requests', `planned ${s.requests.planned}, sent ${s.requests.sent}, completed ${s.requests.completed}`)
  line('statuses', counts(s.requests.statuses))
  line(
    'throughput',
    `${s.throughput.overallPerS} req/s overall, ${s.throughput.plateauPerS} req/s on the plateau (target ${s.throughput.plateauTargetPerS})`
  )
  const { total: errors, ...errorKinds } = s.errors
  line('errors', `${errors} (${counts(errorKinds)})`)
  const { total: inconsistencies, ...inconsistencyKinds } = s.inconsistencies
  line('inconsistent', `${inconsistencies}${inconsistencies ? ` (${counts(inconsistencyKinds)})` : ''}`)
  line(
    'final saldo',
    s.finalBalances
      .map((b) => `#${b.id} ${b.verdict}${b.verdict === 'match' ? '' : ` (${b.actual} vs ${b.expected})`}`)
      .join(', ')
  )
  console.log(
    `latency ms    ${['p50', 'p99', 'max', 'n'].map((h) => h.padStart(9)).join('')}   from the scheduled send`
  )
  printLatencies(s.latencyMs)
  console.log("  ...from the actual send (the server's share):")
  printLatencies(s.serviceLatencyMs)
  const d = s.driver
  line(
    'driver',
    `schedule lag max ${d.maxScheduleLagMs} ms at ${d.maxScheduleLagAtS} s, p99 ${d.p99ScheduleLagMs} ms, ` +
      `${d.sentOver20MsLate} sent > ${lagWarningMs} ms late; max in flight ${d.maxInFlight}; CPU ${d.cpuPercentOfOneCore}% of a core`
  )
  if (d.fellBehind) {
    console.log(
      `  !!! the driver fell behind its schedule by up to ${d.maxScheduleLagMs} ms: latencies from the scheduled send include that delay`
    )
  }
  printServer(s)
  for (const sample of s.samples) console.log(`  ${sample}`)
  for (const warning of s.warnings) console.log(`  !!! ${warning}`)
  line('results', file)
  console.log('===========================================================================\n')
}

function printLatencies(latencies: Summary['latencyMs']) {
  for (const [kind, l] of Object.entries(latencies)) {
    console.log(`  ${kind.padEnd(12)}${[l.p50, l.p99, l.max, l.n].map((v) => String(v).padStart(9)).join('')}`)
  }
}

function printServer(s: Summary) {
  if (!s.server)
    return console.log('server        RSS and CPU not measured (--target: the server processes are not ours)')
  const { cpuS } = s.server
  console.log(
    `CPU s         server ${cpuS.server}, driver ${cpuS.driver}, others ${cpuS.others} (in ${cpuS.wall} s of wall time)`
  )
  if (cpuS.others > cpuS.wall * 0.1)
    console.log('  !!! other processes were busy on this machine during the run: the figures are disturbed')
  console.log(
    `peak RSS MB   total ${s.server.peakTotalRssMb} (every server process summed at one sample; shared pages count once per process)`
  )
  console.log(`              PSS at the end ${s.server.endPssTotalMb} (shared pages split among their processes)`)
  console.log(`  ${'kind'.padEnd(12)}${['peak RSS', 'PSS end', 'CPU s'].map((h) => h.padStart(10)).join('')}`)
  for (const [kind, k] of Object.entries(s.server.byKind)) {
    console.log(
      `  ${kind.padEnd(12)}${[k.peakRssMb, k.endPssMb, k.cpuS].map((v) => String(v).padStart(10)).join('')}  ${k.processes} processes`
    )
  }
  console.log(
    `    ${'pid'.padStart(7)} ${'kind'.padEnd(9)}${['peak RSS', 'PSS end', 'CPU s'].map((h) => h.padStart(10)).join('')}  process`
  )
  for (const p of s.server.processes) {
    const figures = [p.peakRssMb, p.endPssMb ?? '-', p.cpuS].map((v) => String(v).padStart(10)).join('')
    console.log(`    ${String(p.pid).padStart(7)} ${p.kind.padEnd(9)}${figures}  ${p.label}`)
  }
}

export async function writeSummary(s: Summary): Promise<string> {
  const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results')
  await mkdir(dir, { recursive: true })
  const file = path.join(dir, `${s.startedAt.replace(/[:.]/g, '-')}.json`)
  await writeFile(file, `${JSON.stringify(s, null, 2)}\n`)
  return path.relative(process.cwd(), file)
}
