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

/**
 * Lines go to stdout asynchronously: a line written while the last write is still in flight joins the
 * next one, instead of one blocking write() per line (an access line per request cost a fifth of a
 * replica's CPU on the Rinha routes, stdout being a pipe to the container runtime). pino flushes
 * what is left, synchronously, when the process exits.
 */
export function createLogger(config: Pick<Config, 'production' | 'logLevel'>, bindings: Record<string, unknown> = {}) {
  const options = loggerOptions(config)
  if (options.transport) return pino(options).child(bindings)
  return pino(options, pino.destination({ dest: 1, sync: false })).child(bindings)
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
