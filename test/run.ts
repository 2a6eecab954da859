/**
 * `npm test`: builds dist/ if it is older than its sources (spawned replicas run it), finds a
 * PostgreSQL (DATABASE_URL, else an embedded one started here for the run), then runs every
 * *.test.ts with node's test runner. Each test file makes databases of its own.
 *
 *   npm test -- crebitos     only the files whose path contains `crebitos`
 *   COVERAGE=1 npm test      also prints the statement, branch, function and line coverage of src/
 *                            (c8, .c8rc.json): the test processes' in-process apps and every spawned
 *                            replica (dist/, mapped back to src/ by its source maps), per file in
 *                            coverage/ (text and lcov) and summed on the console
 */
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded.js'
import { createLogger } from '../src/platform/logger.js'
import { buildIfStale, freshBuildVariable } from './helpers/build.js'
import { projectRoot } from './helpers/processes.js'

const roots = ['src', 'test']
const args = process.argv.slice(2)
const coverage = process.env.COVERAGE === '1' || args.includes('--coverage')
const only = args.filter((arg) => arg !== '--coverage')

function testFiles(): string[] {
  return roots
    .flatMap((root) => readdirSync(root, { recursive: true, encoding: 'utf8' }).map((file) => path.join(root, file)))
    .filter((file) => file.endsWith('.test.ts'))
    .filter((file) => only.length === 0 || only.some((pattern) => file.includes(pattern)))
    .sort()
}

async function main() {
  buildIfStale('test')
  let adminUrl = process.env.DATABASE_URL
  let embedded: EmbeddedServer | undefined
  let dataDir: string | undefined
  if (!adminUrl) {
    console.log('test: DATABASE_URL is not set; starting an embedded PostgreSQL for this run')
    dataDir = await mkdtemp(path.join(tmpdir(), 'tandem-test-pg-'))
    embedded = await startEmbeddedPostgres(dataDir, createLogger({ production: true, logLevel: 'warn' }))
    adminUrl = embedded.url
  }
  const files = testFiles()
  const node = [process.execPath, '--import', 'tsx', '--test', '--test-reporter=spec', ...files]
  // Node 20's own --experimental-test-coverage fails on tsx's source maps; c8 collects V8's coverage
  // of every node process below it (NODE_V8_COVERAGE), replicas included, and reports it at the end.
  const command = coverage ? [process.execPath, path.join(projectRoot, 'node_modules/c8/bin/c8.js'), ...node] : node
  const child = spawn(command[0], command.slice(1), {
    stdio: 'inherit',
    // dist/ is fresh now: an edit made while the suite runs must not fail the files after it.
    env: { ...process.env, TANDEM_TEST_ADMIN_URL: adminUrl, DATABASE_URL: '', [freshBuildVariable]: '1' }
  })
  const code = await new Promise<number>((resolve) => child.once('exit', (status) => resolve(status ?? 1)))
  await embedded?.stop()
  if (dataDir) await rm(dataDir, { recursive: true, force: true })
  process.exit(code)
}

await main()
