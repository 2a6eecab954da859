/**
 * `npm test`: finds a PostgreSQL (DATABASE_URL, else an embedded one started here for the run),
 * then runs every *.test.ts with node's test runner. Each test file makes databases of its own.
 */
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded.js'
import { createLogger } from '../src/platform/logger.js'

const roots = ['src', 'test']
const only = process.argv.slice(2)

function testFiles(): string[] {
  return roots
    .flatMap((root) => readdirSync(root, { recursive: true, encoding: 'utf8' }).map((file) => path.join(root, file)))
    .filter((file) => file.endsWith('.test.ts'))
    .filter((file) => only.length === 0 || only.some((pattern) => file.includes(pattern)))
    .sort()
}

async function main() {
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
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files], {
    stdio: 'inherit',
    env: { ...process.env, TANDEM_TEST_ADMIN_URL: adminUrl, DATABASE_URL: '' }
  })
  const code = await new Promise<number>((resolve) => child.once('exit', (status) => resolve(status ?? 1)))
  await embedded?.stop()
  if (dataDir) await rm(dataDir, { recursive: true, force: true })
  process.exit(code)
}

await main()
