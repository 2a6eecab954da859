import Fastify, { LogController, type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './config.js'
import type { Sql } from './db/pool.js'
import { crebitosRoutes } from './modules/crebitos/routes.js'
import { errorsPlugin } from './platform/errors.js'
import { healthRoutes } from './platform/health.js'
import { loggerOptions } from './platform/logger.js'
import { useValidation } from './platform/validation.js'

export interface AppOptions {
  config: Config
  sql: Sql
  /** Fields added to every log line, such as the worker number. */
  logBindings?: Record<string, unknown>
}

/** The HTTP app, read as a table of contents: platform first, then one plugin per module. */
export async function buildApp ({ config, sql, logBindings = {} }: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { ...loggerOptions(config), base: logBindings },
    // Access lines go out at debug level from the onResponse hook below; nginx keeps its own.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    requestTimeout: 30_000
  }).withTypeProvider<TypeBoxTypeProvider>()

  useValidation(app)
  app.addHook('onResponse', async (request, reply) => {
    request.log.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: reply.elapsedTime }, 'request')
  })

  await app.register(errorsPlugin, { production: config.production })
  await app.register(healthRoutes, { sql })
  await app.register(crebitosRoutes, { sql })
  return app
}
