import pino, { type LoggerOptions } from 'pino'
import type { Config } from '../config.js'

/** JSON lines in production or when piped; pretty lines on a developer's terminal. */
export function loggerOptions(config: Pick<Config, 'production' | 'logLevel'>): LoggerOptions {
  const options: LoggerOptions = {
    level: config.logLevel,
    redact: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]']
  }
  if (!config.production && process.stdout.isTTY && isInstalled('pino-pretty')) {
    options.transport = { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } }
  }
  return options
}

export function createLogger(config: Pick<Config, 'production' | 'logLevel'>, bindings: Record<string, unknown> = {}) {
  return pino(loggerOptions(config)).child(bindings)
}

export type Logger = ReturnType<typeof createLogger>

function isInstalled(specifier: string): boolean {
  try {
    import.meta.resolve(specifier)
    return true
  } catch {
    return false
  }
}
