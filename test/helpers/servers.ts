import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { freePort } from '../../src/db/embedded.js'
import type { Sql } from '../../src/db/pool.js'
import { until } from './wait.js'

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const mainScript = path.join(projectRoot, 'dist/main.js')

/**
 * Tests register and log in many users from 127.0.0.1: the abuse limits counted per address are
 * raised for them, and load shedding is off. A test of a limit sets the variable it tests.
 */
export const testLimits: Record<string, string> = {
  REGISTRATION_LIMIT_PER_MINUTE: '100000',
  REGISTRATION_TOTAL_LIMIT_PER_MINUTE: '1000000',
  LOGIN_ADDRESS_LIMIT_PER_MINUTE: '100000',
  LOGIN_EMAIL_LIMIT_PER_MINUTE: '100000',
  SHEET_MISS_LIMIT_PER_MINUTE: '1000000',
  PASSWORD_HASH_QUEUE_MAX: '100000',
  // Load shedding measures the process's own event loop: in-process apps share it with the test
  // runner, and a loaded CI machine would shed the very requests a test is about.
  OVERLOAD_EVENT_LOOP_DELAY_MS: '0',
  OVERLOAD_MAX_IN_FLIGHT: '0',
  OVERLOAD_DATABASE_WAIT_MS: '0'
}

/** The real app in this process, listening on 127.0.0.1 on a free port. */
export async function startApp(sql: Sql, env: Record<string, string> = {}): Promise<{ url: string, app: FastifyInstance }> {
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', ...testLimits, ...env })
  const app = await buildApp({ config, sql })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return { url: `http://127.0.0.1:${port}`, app }
}

export interface ServerProcess {
  url: string
  port: number
  child: ChildProcess
  output(): string
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

/**
 * A server process from the built `dist/` (run `npm run build` first; `npm test` does):
 * `serve` for one replica, `start` for the embedded cluster. Spawned in its own process group so a
 * test can kill -9 the whole tree.
 */
export async function spawnServer(
  command: 'serve' | 'start',
  env: Record<string, string>,
  { waitReady = true, timeoutMs = 60_000 } = {}
): Promise<ServerProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort()
  const child = spawn(process.execPath, ['--enable-source-maps', mainScript, command], {
    cwd: projectRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    // `start` logs at info so its "Tandem listening" line (every worker up) can be waited for.
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'test', LOG_LEVEL: command === 'start' ? 'info' : 'warn', ...testLimits, ...env, PORT: String(port) }
  })
  let output = ''
  child.stdout!.on('data', (chunk) => { output += chunk })
  child.stderr!.on('data', (chunk) => { output += chunk })
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  const server: ServerProcess = {
    url: `http://127.0.0.1:${port}`,
    port,
    child,
    output: () => output,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    }
  }
  if (waitReady) await waitForHealth(server, exited, timeoutMs)
  // One worker answering /health is not all of them: the primary says when every worker listens.
  if (waitReady && command === 'start') await until(() => output.includes('Tandem listening'), 'every worker to listen', timeoutMs)
  return server
}

async function waitForHealth(server: ServerProcess, exited: Promise<number | null>, timeoutMs: number) {
  let gone = false
  void exited.then(() => { gone = true })
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
    if (gone) throw new Error(`server exited during start-up:\n${server.output()}`)
    try {
      const res = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(1000) })
      if (res.ok) return
    } catch {
      // not listening yet
    }
    await sleep(100)
  }
  server.child.kill('SIGKILL')
  throw new Error(`server not healthy within ${timeoutMs} ms:\n${server.output()}`)
}

/** kill -9 of a process group: the supervisor, its workers and anything else it started in it. */
export function killGroup(child: ChildProcess) {
  try {
    process.kill(-child.pid!, 'SIGKILL')
  } catch {
    // already gone
  }
}

/** The JSON log lines of a process's output; other lines are left out. */
export function logLines(output: string): Array<Record<string, unknown>> {
  return output.split('\n').flatMap((line) => {
    try {
      return [JSON.parse(line)]
    } catch {
      return []
    }
  })
}
