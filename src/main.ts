#!/usr/bin/env node
import cluster from 'node:cluster'
import { runPrimary, migrateDatabase, provideDatabase } from './cluster.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { createLogger, type Logger } from './platform/logger.js'
import { serve } from './server.js'

const usage = `usage: tandem <command>
  start     embedded PostgreSQL (unless DATABASE_URL is set), migrations, WORKERS workers on PORT
  serve     one API process (a replica behind a load balancer): waits for DATABASE_URL, migrates, listens
  migrate   apply pending migrations and exit
  postgres  run only the embedded PostgreSQL (migrated) and print its URL, until stopped`

async function main (command: string | undefined, config: Config, log: Logger) {
  switch (command) {
    case 'start':
      return runPrimary(config, log)
    case 'worker': // forked by `start`
      return runWorker(config, log)
    case 'serve':
      return serve({ config, databaseUrl: requireDatabaseUrl(config), log, runMigrations: true })
    case 'migrate': {
      const { url, embedded } = await provideDatabase(config, log)
      await migrateDatabase(url, config, log).finally(() => embedded?.stop())
      return
    }
    case 'postgres':
      return runDatabaseOnly(config, log)
    default:
      process.stderr.write(`${usage}\n`)
      process.exitCode = 2
  }
}

function runWorker (config: Config, log: Logger) {
  const worker = cluster.worker?.id ?? 0
  return serve({
    config,
    databaseUrl: requireDatabaseUrl(config),
    log: log.child({ worker }),
    runMigrations: false,
    worker
  })
}

async function runDatabaseOnly (config: Config, log: Logger) {
  const { url, embedded } = await provideDatabase(config, log)
  await migrateDatabase(url, config, log)
  process.stdout.write(`DATABASE_URL=${url}\n`)
  const stop = async () => { await embedded?.stop(); process.exit(0) }
  process.once('SIGTERM', () => void stop())
  process.once('SIGINT', () => void stop())
  setInterval(() => {}, 1 << 30) // the postmaster is detached and unref'd: nothing else keeps us running until a signal
}

function requireDatabaseUrl (config: Config): string {
  if (!config.databaseUrl) throw new ConfigError('DATABASE_URL is required for this command')
  return config.databaseUrl
}

let config: Config
try {
  config = loadConfig()
} catch (error) {
  process.stderr.write(`tandem: ${(error as Error).message}\n`)
  process.exit(1)
}
const log = createLogger(config, { role: cluster.isPrimary ? 'primary' : 'worker' })
main(process.argv[2], config, log).catch((error: unknown) => {
  if (error instanceof ConfigError) process.stderr.write(`tandem: ${error.message}\n`)
  else log.fatal({ err: error }, 'start-up failed')
  setTimeout(() => process.exit(1), 100)
})
