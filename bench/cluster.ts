import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { freePort } from '../src/db/embedded.js'

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const pinning = spawnSync('taskset', ['-V']).status === 0

export interface EmbeddedCluster {
  url: string
  /** postgres:// URL of its embedded PostgreSQL, to read statistics around the API. */
  databaseUrl: string
  pinned: boolean
  stop(): Promise<void>
}

/**
 * `npm start` as a user runs it (embedded PostgreSQL, 2 workers, production logging), on core 1 when
 * taskset exists so the load generator can have core 0; extra environment such as REDIS_URL.
 */
export async function startEmbeddedCluster(env: Record<string, string> = {}): Promise<EmbeddedCluster> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'tandem-bench-'))
  await chmod(dataDir, 0o755) // as root the embedded PostgreSQL runs as `postgres`
  const port = await freePort()
  const command = [process.execPath, path.join(projectRoot, 'dist/main.js'), 'start']
  const child = spawn(pinning ? 'taskset' : command[0], pinning ? ['-c', '1', ...command] : command.slice(1), {
    cwd: projectRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_ENV: 'production', LOG_LEVEL: 'info', WORKERS: '2', DATA_DIR: dataDir, PORT: String(port), DATABASE_URL: '', ...env }
  })
  let output = ''
  child.stdout!.on('data', (chunk) => { output += chunk })
  child.stderr!.on('data', (chunk) => { output += chunk })
  for (const deadline = Date.now() + 60_000; !output.includes('Tandem listening'); await sleep(100)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the cluster did not start:\n${output}`)
  }
  const { user, password } = JSON.parse(await readFile(path.join(dataDir, 'credentials.json'), 'utf8'))
  const postgresPort = (await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[3]
  return {
    url: `http://127.0.0.1:${port}`,
    databaseUrl: `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${postgresPort}/postgres`,
    pinned: pinning,
    async stop() {
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await Promise.race([exited, sleep(20_000)])
      await rm(dataDir, { recursive: true, force: true })
    }
  }
}

/** Re-runs this script on core 0 (the server side has core 1), once. */
export function pinLoadGenerator(): boolean {
  if (!pinning || process.env.TANDEM_BENCH_PINNED) return false
  const result = spawnSync('taskset', ['-c', '0', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, TANDEM_BENCH_PINNED: '1' }
  })
  process.exit(result.status ?? 1)
}
