import type { FastifyPluginAsync } from 'fastify'
import { within } from './errors.js'

const readyTimeoutMs = 1000

export interface HealthOptions {
  /** One probe per dependency, e.g. `select 1`. */
  checks: Record<string, () => Promise<unknown>>
  /**
   * Dependencies only some routes need (Redis: the counter alone): reported when down, but the
   * replica stays ready, since taking every replica out of rotation would stop the routes that
   * never needed it. Their own routes answer 503 meanwhile.
   */
  optional?: string[]
}

/** `/health`: the process answers. `/ready`: and every required dependency does, within a second. */
export const healthRoutes: FastifyPluginAsync<HealthOptions> = async (app, { checks, optional = [] }) => {
  // Probes are answered even while the replica sheds load: an orchestrator must not restart a busy replica.
  const probeRoute = { exposeHeadRoute: true, config: { exemptFromShedding: true } }
  // /api/health: the path the original increments service answered, for its existing clients.
  for (const path of ['/health', '/api/health']) app.get(path, probeRoute, async () => ({ status: 'ok' }))

  app.get('/ready', probeRoute, async (request, reply) => {
    const results = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => [name, await probe(check)] as const)
    )
    const status = Object.fromEntries(results)
    const down = results.filter(([, state]) => state === 'down').map(([name]) => name)
    const required = down.filter((name) => !optional.includes(name))
    if (down.length > 0)
      request.log.warn({ down }, required.length > 0 ? 'not ready' : 'ready without some dependencies')
    if (required.length === 0) return { status: down.length === 0 ? 'ready' : 'degraded', ...status }
    return reply.code(503).send({ error: 'unavailable', message: `unreachable: ${required.join(', ')}`, ...status })
  })
}

/** Up when the check answers within a second. */
const probe = (check: () => Promise<unknown>): Promise<'up' | 'down'> =>
  within(check(), readyTimeoutMs, 'readiness probe').then(
    () => 'up',
    () => 'down'
  )
