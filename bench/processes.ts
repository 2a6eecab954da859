import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

export type ProcessKind = 'nginx' | 'node' | 'postgres' | 'other'

export interface ProcessFigures {
  pid: number
  kind: ProcessKind
  label: string
  peakRssKb: number
  /** The kernel's own high-water mark, which also catches spikes between samples. */
  hwmKb: number
  /** Proportional set size at the end: shared pages split among the processes sharing them. */
  endPssKb: number | undefined
  /** CPU time used while sampled. */
  cpuS: number
}

export interface KindFigures {
  processes: number
  /** Peak of the kind's summed RSS at one sample. */
  peakRssKb: number
  endPssKb: number
  cpuS: number
}

export interface ServerReport {
  processes: ProcessFigures[]
  byKind: Partial<Record<ProcessKind, KindFigures>>
  peakTotalRssKb: number
  endPssTotalKb: number
  cpuTotalS: number
  /** This process's CPU time over the same window. */
  driverCpuS: number
  /** Busy time of every CPU of the machine over the window: what is neither server nor driver is someone else's. */
  machineBusyS: number
  /** Of machineBusyS, the time the hypervisor ran other guests on this machine's virtual CPUs. */
  stealS: number
  wallS: number
  samples: number
}

interface Tracked {
  pid: number
  kind: ProcessKind
  label: string
  rssKb: number
  peakRssKb: number
  hwmKb: number
  firstTicks: number
  ticks: number
}

const ticksPerSecond = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100

/**
 * Samples memory (VmRSS) and CPU time of every process under the given roots (children found
 * through /proc/<pid>/task/<pid>/children) every `everyMs`, until stopped.
 */
export function sampleProcesses(roots: () => number[], everyMs = 200): { stop(): ServerReport } {
  const tracked = new Map<number, Tracked>()
  const kindPeaks = new Map<ProcessKind, number>()
  let peakTotalRssKb = 0
  let samples = 0
  const sample = () => {
    const totals = new Map<ProcessKind, number>()
    for (const pid of descendants(roots())) {
      const t = record(tracked, pid, samples === 0)
      if (t) totals.set(t.kind, (totals.get(t.kind) ?? 0) + t.rssKb)
    }
    for (const [kind, kb] of totals) kindPeaks.set(kind, Math.max(kindPeaks.get(kind) ?? 0, kb))
    peakTotalRssKb = Math.max(peakTotalRssKb, sum([...totals.values()]))
    samples++
  }
  const started = { wall: performance.now(), cpu: process.cpuUsage(), ...machineTimes() }
  sample()
  const timer = setInterval(sample, everyMs)
  return {
    stop() {
      clearInterval(timer)
      sample()
      const processes = [...tracked.values()].map(figures)
      const cpu = process.cpuUsage(started.cpu)
      const machine = machineTimes()
      return {
        processes,
        byKind: byKind(processes, kindPeaks),
        peakTotalRssKb,
        endPssTotalKb: sum(processes.map((p) => p.endPssKb ?? 0)),
        cpuTotalS: sum(processes.map((p) => p.cpuS)),
        driverCpuS: (cpu.user + cpu.system) / 1e6,
        machineBusyS: machine.busyS - started.busyS,
        stealS: machine.stealS - started.stealS,
        wallS: (performance.now() - started.wall) / 1000,
        samples
      }
    }
  }
}

/** A process already there at the first sample counts its CPU from then; a later one from its start. */
function record(tracked: Map<number, Tracked>, pid: number, first: boolean): Tracked | undefined {
  const status = readStatus(pid)
  const ticks = readTicks(pid)
  if (!status || ticks === undefined) return undefined
  const t = tracked.get(pid) ?? {
    pid,
    kind: kindOf(status.name, pid),
    label: labelOf(pid),
    rssKb: 0,
    peakRssKb: 0,
    hwmKb: 0,
    firstTicks: first ? ticks : 0,
    ticks
  }
  t.rssKb = status.rssKb
  t.peakRssKb = Math.max(t.peakRssKb, status.rssKb)
  t.hwmKb = Math.max(t.hwmKb, status.hwmKb)
  t.ticks = ticks
  tracked.set(pid, t)
  return t
}

/** Labels are read again at the end: a backend caught just after its fork still shows the postmaster's. */
function figures(t: Tracked): ProcessFigures {
  return {
    pid: t.pid,
    kind: t.kind,
    label: labelOf(t.pid) || t.label,
    peakRssKb: t.peakRssKb,
    hwmKb: t.hwmKb,
    endPssKb: readPss(t.pid),
    cpuS: (t.ticks - t.firstTicks) / ticksPerSecond
  }
}

function byKind(processes: ProcessFigures[], kindPeaks: Map<ProcessKind, number>): ServerReport['byKind'] {
  return Object.fromEntries(
    [...kindPeaks].map(([kind, peakRssKb]) => {
      const ofKind = processes.filter((p) => p.kind === kind)
      return [
        kind,
        {
          processes: ofKind.length,
          peakRssKb,
          endPssKb: sum(ofKind.map((p) => p.endPssKb ?? 0)),
          cpuS: sum(ofKind.map((p) => p.cpuS))
        }
      ]
    })
  )
}

function descendants(roots: number[]): number[] {
  const seen = new Set<number>()
  const pending = [...roots]
  while (pending.length > 0) {
    const pid = pending.pop()!
    if (seen.has(pid)) continue
    seen.add(pid)
    pending.push(...children(pid))
  }
  return [...seen]
}

function children(pid: number): number[] {
  const text = readProc(`/proc/${pid}/task/${pid}/children`) ?? ''
  return text.split(' ').filter(Boolean).map(Number)
}

function readStatus(pid: number): { name: string; rssKb: number; hwmKb: number } | undefined {
  const text = readProc(`/proc/${pid}/status`)
  if (!text) return undefined
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1] ?? ''
  // Zombies have no VmRSS: nothing to count.
  if (!field('VmRSS')) return undefined
  return { name: field('Name'), rssKb: Number.parseInt(field('VmRSS'), 10), hwmKb: Number.parseInt(field('VmHWM'), 10) }
}

/** utime + stime, the 14th and 15th fields of /proc/<pid>/stat (counted after the command name, which may hold spaces). */
function readTicks(pid: number): number | undefined {
  const text = readProc(`/proc/${pid}/stat`)
  if (!text) return undefined
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}

/** Read once at the end: smaps_rollup walks every mapping, too slow to read five times a second. */
function readPss(pid: number): number | undefined {
  const kb = /^Pss:\s*(\d+)/m.exec(readProc(`/proc/${pid}/smaps_rollup`) ?? '')?.[1]
  return kb ? Number.parseInt(kb, 10) : undefined
}

/** All CPUs, from the first line of /proc/stat: busy is everything but idle and iowait, steal included. */
function machineTimes(): { busyS: number; stealS: number } {
  const [user, nice, system, , , irq, softirq, steal] = (readProc('/proc/stat') ?? '')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number)
  return { busyS: (user + nice + system + irq + softirq + steal) / ticksPerSecond, stealS: steal / ticksPerSecond }
}

function kindOf(name: string, pid: number): ProcessKind {
  if (name.startsWith('nginx')) return 'nginx'
  if (name.startsWith('postgres')) return 'postgres'
  if (name === 'node' || name === 'MainThread' || /\bnode\b/.test(labelOf(pid))) return 'node'
  return 'other'
}

/**
 * The command line, which PostgreSQL and nginx rewrite to say what the process is; a backend's
 * current state (idle, SELECT...) after its client address is left out.
 */
function labelOf(pid: number): string {
  const cmdline = (readProc(`/proc/${pid}/cmdline`) ?? '').replaceAll('\0', ' ').trim()
  return cmdline
    .replace(/^\S*\/(node|nginx|postgres)\b/, '$1')
    .replace(/(\(\d+\)) .*$/, '$1')
    .slice(0, 80)
}

function sum(values: number[]): number {
  return values.reduce((total, n) => total + n, 0)
}

function readProc(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

const mb = (kb: number) => Math.round(kb / 10.24) / 100
const round = (value: number) => Math.round(value * 100) / 100

export type ServerSummary = ReturnType<typeof summarizeServer>

/** The report's figures in MB and seconds, the processes sorted by kind then peak RSS. */
export function summarizeServer(server: ServerReport) {
  return {
    peakTotalRssMb: mb(server.peakTotalRssKb),
    endPssTotalMb: mb(server.endPssTotalKb),
    cpuS: {
      server: round(server.cpuTotalS),
      driver: round(server.driverCpuS),
      // Anything else busy on the machine meanwhile (other tests, the system) shares the cores.
      others: round(Math.max(0, server.machineBusyS - server.cpuTotalS - server.driverCpuS)),
      // Part of others: CPU time the hypervisor gave to other guests (a noisy neighbour slows everything).
      steal: round(server.stealS),
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

/** CPU and memory of the server side, as printed under the load test's summary. */
export function serverText(s: ServerSummary): string[] {
  const { cpuS } = s
  const lines = [
    `CPU s         server ${cpuS.server}, driver ${cpuS.driver}, others ${cpuS.others} of which steal ${cpuS.steal} (in ${cpuS.wall} s of wall time)`
  ]
  if (cpuS.others > cpuS.wall * 0.1)
    lines.push('  !!! other processes were busy on this machine during the run: the figures are disturbed')
  lines.push(
    `peak RSS MB   total ${s.peakTotalRssMb} (every server process summed at one sample; shared pages count once per process)`,
    `              PSS at the end ${s.endPssTotalMb} (shared pages split among their processes)`,
    `  ${'kind'.padEnd(12)}${['peak RSS', 'PSS end', 'CPU s'].map((h) => h.padStart(10)).join('')}`
  )
  for (const [kind, k] of Object.entries(s.byKind)) {
    lines.push(
      `  ${kind.padEnd(12)}${[k.peakRssMb, k.endPssMb, k.cpuS].map((v) => String(v).padStart(10)).join('')}  ${k.processes} processes`
    )
  }
  lines.push(
    `    ${'pid'.padStart(7)} ${'kind'.padEnd(9)}${['peak RSS', 'PSS end', 'CPU s'].map((h) => h.padStart(10)).join('')}  process`
  )
  for (const p of s.processes) {
    const figures = [p.peakRssMb, p.endPssMb ?? '-', p.cpuS].map((v) => String(v).padStart(10)).join('')
    lines.push(`    ${String(p.pid).padStart(7)} ${p.kind.padEnd(9)}${figures}  ${p.label}`)
  }
  return lines
}
