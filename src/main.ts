#!/usr/bin/env node
import cluster from 'node:cluster'
import { forkWorkers, migrateDatabase, provideDatabase } from './cluster.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { createLogger, type Logger } from './platform/logger.js'
import { serve } from './server.js'

const usage = `usage: tandem <command>
  start     embedded PostgreSQL (unless DATABASE_URL is set), migrations, WORKERS workers on PORT
  serve     one API process (a replica behind a load balancer): waits for DATABASE_URL, migrates, listens
  migrate   apply pending migrations and exit
  postgres  run only the embedded PostgreSQL (migrated) and print its URL, until stopped
  loadtest  send a scenario's load to a running server and check every answer (tandem loadtest --help)`

/**
 * The process's lifecycle, owned here alone: the only SIGTERM/SIGINT handlers and the only exits.
 * A command registers what it starts as it starts it; the first signal, a failed start-up or a
 * finished command stops it all, the latest first (workers before their database), then exits.
 */
interface Lifecycle {
  /** What was just started, to be stopped before whatever was started earlier. */
  onStop(stop: () => Promise<void>): void
  /** True once stopping has begun: a command still starting should start nothing more. */
  readonly stopping: boolean
  /** Stops everything registered, then exits with `code`, or 1 if something did not stop cleanly. */
  exit(code: number): Promise<void>
}

function lifecycle(log: Logger): Lifecycle {
  const stops: Array<() => Promise<void>> = []
  let stopping = false
  const exit = async (code: number, signal?: NodeJS.Signals) => {
    // A repeated signal changes nothing: every stop is bounded by a deadline of its own.
    if (stopping) return
    stopping = true
    if (signal) log.info({ signal }, 'stopping')
    for (let stop = stops.pop(); stop; stop = stops.pop()) code = (await stopped(stop, log)) ? code : 1
    if (signal) log.info({ code }, 'stopped')
    process.exit(code)
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void exit(0, signal))
  return {
    onStop: (stop) => {
      stops.push(stop)
    },
    get stopping() {
      return stopping
    },
    exit: (code) => exit(code)
  }
}

/** Runs one stop; false, logged, when it failed or gave up: the next stops run all the same. */
async function stopped(stop: () => Promise<void>, log: Logger): Promise<boolean> {
  try {
    await stop()
    return true
  } catch (error) {
    log.error({ err: error }, 'did not stop cleanly')
    return false
  }
}

async function run(command: string | undefined, config: Config, log: Logger, life: Lifecycle) {
  switch (command) {
    case 'start':
      return start(config, log, life)
    case 'worker': // forked by `start`
      return replica(config, log, life, cluster.worker?.id ?? 0)
    case 'serve':
      return replica(config, log, life)
    case 'migrate': {
      const { url } = await database(config, log, life)
      await migrateDatabase(url, config, log)
      return life.exit(0)
    }
    case 'postgres':
      return databaseOnly(config, log, life)
    default:
      process.stderr.write(`${usage}\n`)
      return life.exit(2)
  }
}

/**
 * The embedded supervisor: database, migrations once, then the workers. A signal at any moment from
 * start-up on drains the workers there are, then stops the embedded database.
 */
async function start(config: Config, log: Logger, life: Lifecycle) {
  const { url, embedded } = await database(config, log, life)
  // A signal meanwhile is stopping everything already: start nothing more for it to wait on.
  if (life.stopping) return
  await migrateDatabase(url, config, log)
  if (life.stopping) return
  const workers = forkWorkers(config, url, log)
  life.onStop(workers.close)
  await workers.listening
  log.info(
    {
      url: `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${config.port}`,
      workers: config.workers,
      database: embedded ? `embedded PostgreSQL pid ${embedded.pid} (${config.dataDir})` : 'DATABASE_URL'
    },
    `Tandem listening on ${config.host}:${config.port}`
  )
}

/** One API process until a signal drains it: a replica on its own (it migrates) or a worker of `start`. */
async function replica(config: Config, log: Logger, life: Lifecycle, worker?: number) {
  const server = await serve({
    config,
    databaseUrl: requireDatabaseUrl(config),
    log,
    runMigrations: worker === undefined,
    worker
  })
  life.onStop(server.close)
}

/** provideDatabase, with an embedded server stopped last on the way out, even one still starting. */
async function database(config: Config, log: Logger, life: Lifecycle) {
  const provided = provideDatabase(config, log)
  life.onStop(async () => {
    await (await provided.catch(() => undefined))?.embedded?.stop()
  })
  return provided
}

async function databaseOnly(config: Config, log: Logger, life: Lifecycle) {
  const { url } = await database(config, log, life)
  await migrateDatabase(url, config, log)
  process.stdout.write(`DATABASE_URL=${url}\n`)
  setInterval(() => {}, 1 << 30) // the postmaster is detached and unref'd: nothing else keeps us running until a signal
}

function requireDatabaseUrl(config: Config): string {
  if (!config.databaseUrl) throw new ConfigError('DATABASE_URL is required for this command')
  return config.databaseUrl
}

/** The server's commands, which all read the environment's configuration first. */
function runServerCommand(command: string | undefined) {
  let config: Config
  try {
    config = loadConfig()
  } catch (error) {
    process.stderr.write(`tandem: ${(error as Error).message}\n`)
    process.exit(1)
  }
  const log = createLogger(config, cluster.worker ? { role: 'worker', worker: cluster.worker.id } : { role: 'primary' })
  const life = lifecycle(log)
  run(command, config, log, life).catch((error: unknown) => {
    if (life.stopping) return // start-up cut short by a stop: the stop decides the exit
    if (error instanceof ConfigError) process.stderr.write(`tandem: ${error.message}\n`)
    else log.fatal({ err: error }, 'start-up failed')
    void life.exit(1)
  })
}

// The load test is a client: it needs no DATABASE_URL nor any other server setting.
if (process.argv[2] === 'loadtest') {
  const { loadtest } = await import('./loadtest/cli.js')
  process.exitCode = await loadtest(process.argv.slice(3))
} else {
  runServerCommand(process.argv[2])
}
