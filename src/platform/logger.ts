import pino, { type LoggerOptions } from 'pino'
import type { Config } from '../config.js'

/** JSON lines in production or when piped; pretty lines on a developer's terminal. */
export function loggerOptions(config: Pick<Config, 'production' | 'logLevel'>): LoggerOptions {
  const options: LoggerOptions = {
    level: config.logLevel,
    redact: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]'],
    serializers: { err: withoutCredentials }
  }
  if (!config.production && process.stdout.isTTY && isInstalled('pino-pretty')) {
    options.transport = { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } }
  }
  return options
}

// Lines wait in memory for up to this many bytes or this long, whichever comes first.
const logBufferBytes = 4096
const logFlushEveryMs = 200

/**
 * Lines go to stdout in batches: up to 4 KiB or 200 ms of them in one write, instead of one write()
 * per line. With an access line per request, those writes (and the pipe's reader woken for each)
 * cost a fifth of a replica's CPU on the Rinha routes. pino writes what is left, synchronously, when
 * the process exits; only a kill -9 loses the last 200 ms.
 */
export function createLogger(config: Pick<Config, 'production' | 'logLevel'>, bindings: Record<string, unknown> = {}) {
  const options = loggerOptions(config)
  if (options.transport) return pino(options).child(bindings)
  return pino(options, bufferedStdout()).child(bindings)
}

let stdout: ReturnType<typeof pino.destination> | undefined

/**
 * One buffer and one flush timer per process, whatever the number of loggers (every in-process app
 * of a test makes one): separate buffers on the same fd would each hold back lines of their own.
 */
function bufferedStdout() {
  if (stdout) return stdout
  const destination = pino.destination({ dest: 1, sync: false, minLength: logBufferBytes })
  // Once the stream is closed (at exit) there is nothing left to flush, and flush() would throw.
  let open = true
  destination.once('close', () => (open = false))
  setInterval(() => open && destination.flush(), logFlushEveryMs).unref()
  stdout = destination
  return destination
}

export type Logger = ReturnType<typeof createLogger>

// Up to the last @ of the URL: a password pasted raw may hold / ? # and @ itself.
const credentials = /([a-z][a-z0-9+.-]*:\/\/)\S*@/gi

/** Removes `user:password@` from a text holding URLs: no log line carries a connection secret. */
export const scrubCredentials = (text: string) => text.replace(credentials, '$1[redacted]@')

/**
 * pino's error serializer, with every URL's credentials taken out of what an error carries: a URL
 * parser's error repeats its whole input, a driver's message may name its connection string.
 */
function withoutCredentials(error: unknown) {
  if (typeof error === 'string') return scrubCredentials(error) // `err: error.message`, as many lines log it
  if (!(error instanceof Error)) return error
  const serialized: Record<string, unknown> = pino.stdSerializers.err(error)
  for (const [key, value] of Object.entries(serialized)) {
    if (typeof value === 'string') serialized[key] = scrubCredentials(value)
  }
  return serialized
}

function isInstalled(specifier: string): boolean {
  try {
    import.meta.resolve(specifier)
    return true
  } catch {
    return false
  }
}
