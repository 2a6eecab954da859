/**
 * `npm run test:faults`: faults injected into real processes under a mixed load over every module,
 * each scenario on databases and replicas of its own, one after another:
 *
 *   replica-kill      kill -9 of one of two replicas; clients retry with the same Idempotency-Key
 *   postgres-outage   PostgreSQL stopped for 5 s, then restarted at once
 *   redis-outage      Redis stopped and started again (the counter's store)
 *   shutdown-crash    SIGTERM of a replica with requests in flight, then kill -9 of PostgreSQL
 *
 * Each prints one summary line (faults injected, requests sent, acknowledged writes checked, retries,
 * duplicates applied, writes lost, the slowest answer during the fault); the last line is
 * `faults: N passed, M failed` (scenarios), and the exit code is 1 when any failed. A scenario that
 * failed only on timing (nothing lost, nothing applied twice) runs once more, and its second run counts.
 *
 *   FAULTS_ONLY=name,name   run only these scenarios
 *   FAULTS_DEADLINE_MS      the whole run, after the build (default 240000)
 *   FAULTS_VERBOSE=1        also list the slow answers during the PostgreSQL outage
 *
 * The scenarios that need a database of the machine's use DATABASE_URL when it is set (as `npm test`
 * does), else an embedded PostgreSQL started for the run; the others run PostgreSQL of their own.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startEmbeddedPostgres } from '../../src/db/embedded.js'
import { createLogger } from '../../src/platform/logger.js'
import { cleanUp, killEverything, trackPostmaster } from './processes.js'
import { postgresOutage } from './postgres-outage.js'
import { redisOutage } from './redis-outage.js'
import { replicaKill } from './replica-kill.js'
import { emptyResult, failed, passed, summaryLine, type ScenarioResult } from './report.js'
import { shutdownCrash } from './shutdown-crash.js'

const scenarios: Array<{ name: string; run: (log: (line: string) => void) => Promise<ScenarioResult> }> = [
  { name: 'replica-kill', run: replicaKill },
  { name: 'postgres-outage', run: postgresOutage },
  { name: 'redis-outage', run: redisOutage },
  { name: 'shutdown-crash', run: shutdownCrash }
]

const log = (line: string) => process.stdout.write(`${line}\n`)
const started = Date.now()
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`
const deadlineMs = Number(process.env.FAULTS_DEADLINE_MS || 240_000)
const only = (process.env.FAULTS_ONLY ?? '').split(',').filter(Boolean)
const unknown = only.filter((name) => !scenarios.some((scenario) => scenario.name === name))
if (unknown.length > 0)
  throw new Error(
    `FAULTS_ONLY names no scenario: ${unknown.join(', ')} (there are ${scenarios.map((s) => s.name).join(', ')})`
  )

const results: ScenarioResult[] = []
let stopAdmin: () => Promise<void> = async () => {}

function verdictLine() {
  return `faults: ${results.filter(passed).length} passed, ${results.filter(failed).length} failed`
}

// Whatever hangs, the run ends: everything it started is killed, the verdict printed, exit 1.
setTimeout(() => {
  log(`faults: hard deadline of ${deadlineMs} ms passed (FAULTS_DEADLINE_MS); stopping`)
  killEverything()
  results.push({ ...emptyResult('deadline'), problems: ['the run did not finish in time'] })
  void Promise.race([cleanUp(log).then(() => stopAdmin()), sleep(10_000)]).finally(() => {
    log(verdictLine())
    process.exit(1)
  })
}, deadlineMs).unref()

// Replicas and PostgreSQL run in process groups of their own: a Ctrl-C or a cancelled CI job would
// leave them running, so the run stops them itself.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`faults: ${signal}; stopping`)
    killEverything()
    void Promise.race([cleanUp(log).then(() => stopAdmin()), sleep(10_000)]).finally(() => process.exit(130))
  })
}

// However the run ends (a broken stdout pipe included), nothing it started outlives it.
process.on('exit', killEverything)

/** The machine's PostgreSQL for createDatabase (DATABASE_URL), else an embedded one for the run. */
async function provideAdminUrl() {
  if (process.env.DATABASE_URL) {
    process.env.TANDEM_TEST_ADMIN_URL = process.env.DATABASE_URL
    return
  }
  log('faults: DATABASE_URL is not set; starting an embedded PostgreSQL for this run')
  const dataDir = await mkdtemp(path.join(tmpdir(), 'tandem-faults-admin-'))
  const embedded = await startEmbeddedPostgres(dataDir, createLogger({ production: true, logLevel: 'warn' }))
  const untrack = trackPostmaster(() => embedded.pid)
  process.env.TANDEM_TEST_ADMIN_URL = embedded.url
  stopAdmin = async () => {
    untrack()
    await embedded.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

/** One run of a scenario on its own processes, torn down after it, its problems and summary printed. */
async function attempt(scenario: (typeof scenarios)[number]): Promise<ScenarioResult> {
  log(`faults: ${scenario.name} (${elapsed()})`)
  let result: ScenarioResult
  try {
    result = await scenario.run(log)
  } catch (error) {
    result = {
      ...emptyResult(scenario.name),
      problems: [`the scenario itself failed: ${(error as Error).stack ?? String(error)}`]
    }
  } finally {
    await cleanUp(log)
  }
  for (const problem of result.problems) log(`  ✗ ${problem}`)
  log(summaryLine(result))
  return result
}

async function main() {
  await provideAdminUrl()
  for (const scenario of scenarios) {
    if (only.length > 0 && !only.includes(scenario.name)) continue
    let result = await attempt(scenario)
    // A timing problem (a bound missed on a machine whose two cores run the load, both replicas and
    // PostgreSQL) earns the scenario one more run on fresh processes, both runs printed. A write lost
    // or applied twice never does: that is the property under test, whatever the timing.
    if (failed(result) && result.lost === 0 && result.duplicates === 0) {
      log(`faults: ${scenario.name} missed a timing bound, nothing lost or duplicated: running it once more`)
      result = await attempt(scenario)
    }
    results.push(result)
  }
  await stopAdmin()
  log(`faults: finished in ${elapsed()}`)
  const skipped = results.filter((result) => result.skipped)
  if (skipped.length > 0)
    log(`faults: *** ${skipped.length} skipped: ${skipped.map((result) => result.name).join(', ')} ***`)
  log(verdictLine())
  process.exit(results.some(failed) ? 1 : 0)
}

main().catch((error: unknown) => {
  log(`faults: the run itself failed: ${(error as Error).stack ?? String(error)}`)
  killEverything()
  results.push({ ...emptyResult('run'), problems: ['the run itself failed'] })
  log(verdictLine())
  process.exit(1)
})
