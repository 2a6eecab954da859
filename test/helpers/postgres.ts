import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { freePort, startEmbeddedPostgres, type EmbeddedServer } from '../../src/db/embedded.js'
import { quietLog } from './database.js'

export interface StoppableDatabase {
  url: string
  stop(): Promise<void>
  /** Starts again on the same port and data directory. */
  start(): Promise<void>
  remove(): Promise<void>
}

/** A PostgreSQL of the test's own that it can stop and start: the embedded one, on a fixed port. */
export async function startStoppableDatabase(): Promise<StoppableDatabase> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'tandem-pg-'))
  const port = await freePort()
  let server: EmbeddedServer = await startEmbeddedPostgres(dataDir, quietLog, port)
  return {
    url: server.url,
    stop: () => server.stop(),
    async start() {
      server = await startEmbeddedPostgres(dataDir, quietLog, port)
    },
    async remove() {
      await server.stop()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
}
