import { spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { freePort, hasExited, launch, type Launched } from './processes.js'

export interface RedisServer {
  url: string
  /** Graceful SHUTDOWN (the AOF is synced), then the process is gone. */
  stop(): Promise<void>
  /** Starts again on the same port and directory, with the data it had. */
  start(): Promise<void>
  remove(): Promise<void>
}

export const redisServerBinary = (() => {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' })
  return found.status === 0 ? found.stdout.trim() : undefined
})()

/** Why the Redis cases cannot run here, or undefined when they can. */
export function redisSkipReason(): string | undefined {
  if (redisServerBinary) return undefined
  const reason = 'SKIPPED: no redis-server on PATH (apt-get install redis-server) — the Redis cases did not run'
  console.warn(`\n*** ${reason} ***\n`)
  return reason
}

/** A redis-server of the test's own, with AOF on, on a free loopback port. */
export async function startRedisServer(): Promise<RedisServer> {
  if (!redisServerBinary) throw new Error('redis-server not found')
  const dir = await mkdtemp(path.join(tmpdir(), 'tandem-redis-'))
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  let redis: Launched | undefined

  const server: RedisServer = {
    url,
    async start() {
      redis = launch('redis-server', [
        redisServerBinary!,
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always'
      ])
      await waitForPing(url, redis)
    },
    async stop() {
      if (!redis || hasExited(redis.child)) return
      redis.child.kill('SIGTERM') // redis-server shuts down gracefully on SIGTERM, syncing its AOF
      await redis.exited
    },
    async remove() {
      await server.stop()
      await rm(dir, { recursive: true, force: true })
    }
  }
  await server.start()
  return server
}

async function waitForPing(url: string, redis: Launched) {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
    if (hasExited(redis.child)) throw new Error(`redis-server exited with ${redis.child.exitCode}: ${redis.output()}`)
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    probe.on('error', () => {})
    try {
      await probe.connect()
      await probe.ping()
      return
    } catch {
      await sleep(50)
    } finally {
      probe.disconnect()
    }
  }
  throw new Error('redis-server did not answer within 10 s')
}
