/**
 * `tandem loadtest <scenario> [flags]`: needs no server configuration, only a target URL. Exit
 * codes: 0 every check held, 1 a check failed, 2 bad usage, 3 the run could not go on (target
 * unreachable), 130 interrupted (Ctrl-C).
 */
import { parseArgs } from 'node:util'
import { findMax, runScenario, type Progress, type RunResult } from './engine.js'
import { writeHtml } from './html.js'
import { figuresOf, summaryText, writeJson, type FindMaxFigures } from './report.js'
import type { Scenario } from './scenario.js'
import { scenarios } from './scenarios/index.js'
import { durationMs, plannedUsers, scaleStreams } from './schedule.js'

export const exitCodes = { passed: 0, failed: 1, usage: 2, error: 3, interrupted: 130 } as const

/** Gatling's default request timeout (gatling.http.requestTimeout), which the simulation keeps. */
const defaultTimeoutMs = 60_000
const defaultSlaMs = 250
/** A --find-max step at time scale 1; at least a few seconds whatever the scale. */
const findMaxStepS = 30
const plainProgressEveryS = 5
/** A second Ctrl-C later than this exits at once, without waiting for answers. */
const repeatedSignalMs = 1000

const flags = {
  target: { type: 'string', default: 'http://127.0.0.1:9999' },
  'rate-scale': { type: 'string', default: '1' },
  'time-scale': { type: 'string', default: '1' },
  seed: { type: 'string' },
  json: { type: 'string' },
  html: { type: 'string' },
  'find-max': { type: 'boolean', default: false },
  'sla-ms': { type: 'string', default: String(defaultSlaMs) },
  connections: { type: 'string' },
  'timeout-ms': { type: 'string', default: String(defaultTimeoutMs) },
  help: { type: 'boolean', short: 'h', default: false }
} as const

export function usage(): string {
  const list = Object.values(scenarios)
    .map((s) => `  ${s.name.padEnd(12)}${s.summary}\n${s.checks.map((c) => `${' '.repeat(14)}- ${c}`).join('\n')}`)
    .join('\n')
  return `usage: tandem loadtest <scenario> [flags]      (npm run loadtest -- <scenario> [flags])

Sends a scenario's load to a running server and checks every answer. Open model by default: each
arrival is sent at its scheduled instant whatever the server does, and latency counts from that
instant (no coordinated omission). Exit 0 only when every check held.

scenarios:
${list}

flags:
  --target URL        server to load (default http://127.0.0.1:9999)
  --rate-scale F      multiply every arrival rate (default 1)
  --time-scale F      multiply every stage's duration (default 1; rinha at 0.1: 12 s ramp + 12 s plateau)
  --seed N            seed of every random choice (clients, amounts, descriptions); default: random, printed
  --connections N     closed model instead: N workers, each sending back to back on one kept-alive
                      connection, for the scenario's duration
  --timeout-ms N      per request (default ${defaultTimeoutMs}, Gatling's default)
  --find-max          after a warm-up ramp to ×1 (not judged), constant-rate steps at ×1, ×1.5, ×2, ×3 …
                      the scenario's final rate (${findMaxStepS} s × time scale each, at least 3 s) until
                      p99 > --sla-ms, a KO or an inconsistency; reports the highest rate held
  --sla-ms N          p99 bound for --find-max (default ${defaultSlaMs})
  --json FILE         every figure, with per-second series and the latency histogram
  --html FILE         one self-contained page with charts (Chart.js inlined; no network needed)
  -h, --help          this text

exit codes: 0 passed, 1 a check failed (KO or inconsistency), 2 bad usage, 3 could not run
(e.g. target unreachable), 130 interrupted (Ctrl-C: stops sending, prints what it has).
`
}

interface Options {
  scenario: Scenario
  target: string
  rateScale: number
  timeScale: number
  seed: number
  json: string | undefined
  html: string | undefined
  findMax: boolean
  slaMs: number
  connections: number | undefined
  timeoutMs: number
}

class UsageError extends Error {}

function positive(flag: string, text: string, integer = false): number {
  const value = Number(text)
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value)))
    throw new UsageError(`--${flag} must be a positive ${integer ? 'integer' : 'number'}, not "${text}"`)
  return value
}

function targetOf(text: string): string {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new UsageError(`--target must be a URL like http://127.0.0.1:9999, not "${text}"`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`--target must be http:// or https://, not ${url.protocol}`)
  if (url.pathname !== '/' || url.search) throw new UsageError(`--target is an origin, without a path: ${url.origin}`)
  return url.origin
}

/** undefined: --help. */
export function parseOptions(argv: string[]): Options | undefined {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: flags, allowPositionals: true, strict: true })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help) return undefined
  if (positionals.length !== 1)
    throw new UsageError(positionals.length ? `one scenario only, not ${positionals.join(' ')}` : 'which scenario?')
  const scenario = scenarios[positionals[0]]
  if (!scenario)
    throw new UsageError(`no scenario "${positionals[0]}"; there are: ${Object.keys(scenarios).join(', ')}`)
  if (values.seed !== undefined && !/^\d+$/.test(values.seed))
    throw new UsageError(`--seed must be a non-negative integer, not "${values.seed}"`)
  const connections = values.connections === undefined ? undefined : positive('connections', values.connections, true)
  if (connections !== undefined && values['find-max'])
    throw new UsageError('--find-max raises arrival rates: it runs the open model, not with --connections')
  return {
    scenario,
    target: targetOf(values.target),
    rateScale: positive('rate-scale', values['rate-scale']),
    timeScale: positive('time-scale', values['time-scale']),
    seed: values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed) >>> 0,
    json: values.json,
    html: values.html,
    findMax: values['find-max'],
    slaMs: positive('sla-ms', values['sla-ms']),
    connections,
    timeoutMs: positive('timeout-ms', values['timeout-ms'], true)
  }
}

/** A line per second rewritten in place on a terminal; a plain line every few seconds otherwise. */
function progressWriter(stream: NodeJS.WriteStream) {
  let lastPlainS = -Infinity
  const write = (p: Progress) => {
    const phase =
      p.loadElapsedMs === undefined ? 'validation' : `${fmt(p.loadElapsedMs / 1000)}/${fmt(p.loadMs / 1000)} s`
    const text = `${phase}  ${p.perS} req/s  p99 ${p.p99Ms.toFixed(1)} ms  errors ${p.errors}  in flight ${p.inFlight}`
    if (stream.isTTY) return stream.write(`\r\x1b[2K${text}`)
    if (p.elapsedMs / 1000 - lastPlainS < plainProgressEveryS) return
    lastPlainS = p.elapsedMs / 1000
    stream.write(`${text}\n`)
  }
  const end = () => {
    if (stream.isTTY) stream.write('\r\x1b[2K')
  }
  return { write, end }
}

const fmt = (s: number) => s.toFixed(1)

async function execute(options: Options, signal: AbortSignal, onProgress: (p: Progress) => void) {
  const streams = scaleStreams(options.scenario.streams, { rate: options.rateScale, time: options.timeScale })
  const common = { target: options.target, seed: options.seed, timeoutMs: options.timeoutMs, signal, onProgress }
  if (options.findMax) {
    const stepS = Math.max(3, Math.round(findMaxStepS * options.timeScale))
    return findMax(options.scenario, { ...common, streams, slaMs: options.slaMs, stepS })
  }
  const result = await runScenario(options.scenario, {
    ...common,
    streams,
    validate: true,
    connections: options.connections
  })
  return { result, findMax: undefined }
}

function describePlan(options: Options): string {
  const streams = scaleStreams(options.scenario.streams, { rate: options.rateScale, time: options.timeScale })
  const seconds = Math.max(...streams.map((s) => durationMs(s.stages))) / 1000
  const planned = streams.reduce((n, s) => n + plannedUsers(s.stages), 0)
  const shape = options.findMax
    ? `find-max steps from ×1 (SLA p99 ${options.slaMs} ms)`
    : options.connections
      ? `closed model, ${options.connections} connections for ${seconds} s`
      : `open model, ${planned} arrivals over ${seconds} s`
  return `loadtest ${options.scenario.name} → ${options.target}: ${shape}, rate ×${options.rateScale}, time ×${options.timeScale}, seed ${options.seed}, timeout ${options.timeoutMs} ms`
}

/** Runs the command; resolves with the exit code. */
export async function loadtest(argv: string[]): Promise<number> {
  let options: Options | undefined
  try {
    options = parseOptions(argv)
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    process.stderr.write(`tandem loadtest: ${error.message}\n(tandem loadtest --help lists the flags)\n`)
    return exitCodes.usage
  }
  if (!options) {
    process.stdout.write(usage())
    return exitCodes.passed
  }
  const startedAt = new Date()
  const abort = new AbortController()
  let interruptedAt = 0
  const interrupt = () => {
    if (abort.signal.aborted) {
      // Under tsx (npm run loadtest) one Ctrl-C arrives twice: from the terminal and relayed by tsx.
      if (Date.now() - interruptedAt > repeatedSignalMs) process.exit(exitCodes.interrupted)
      return
    }
    interruptedAt = Date.now()
    process.stderr.write('\ninterrupted: no new requests; waiting briefly for the answers in flight...\n')
    abort.abort()
  }
  process.on('SIGINT', interrupt)
  const progress = progressWriter(process.stderr)
  process.stderr.write(`${describePlan(options)}\n`)
  let outcome: { result: RunResult; findMax: FindMaxFigures | undefined }
  try {
    outcome = await execute(options, abort.signal, progress.write)
  } catch (error) {
    progress.end()
    process.stderr.write(`tandem loadtest: ${error instanceof Error ? error.message : String(error)}\n`)
    return abort.signal.aborted ? exitCodes.interrupted : exitCodes.error
  } finally {
    process.off('SIGINT', interrupt)
  }
  progress.end()
  const figures = figuresOf(
    outcome.result,
    {
      scenario: options.scenario.name,
      target: options.target,
      startedAt,
      checks: options.scenario.checks,
      options: {
        rateScale: options.rateScale,
        timeScale: options.timeScale,
        seed: options.seed,
        timeoutMs: options.timeoutMs,
        connections: options.connections,
        findMax: options.findMax,
        slaMs: options.slaMs
      }
    },
    outcome.findMax
  )
  process.stdout.write(`${summaryText(figures)}\n`)
  if (options.json) await writeJson(options.json, figures)
  if (options.html) await writeHtml(options.html, figures)
  if (figures.interrupted) return exitCodes.interrupted
  return figures.passed ? exitCodes.passed : exitCodes.failed
}
