import type { FastifyPluginAsync } from 'fastify'

const readyTimeoutMs = 1000

export interface HealthOptions {
  /** One probe per dependency, e.g. `select 1`. */
  checks: Record<string, () => Promise<unknown>>
}

/** `/health`: the process answers. `/ready`: and every dependency does, within a second. */
export const healthRoutes: FastifyPluginAsync<HealthOptions> = async (app, { checks }) => {
  // Probes are answered even while the replica sheds load: an orchestrator must not restart a busy replica.
  const probeRoute = { exposeHeadRoute: true, config: { exemptFromShedding: true } }
  app.get('/health', probeRoute, async () => ({ status: 'ok' }))

  app.get('/ready', probeRoute, async (request, reply) => {
    const results = await Promise.all(Object.entries(checks).map(async ([name, check]) => [name, await probe(check)] as const))
    const status = Object.fromEntries(results)
    const down = results.filter(([, state]) => state === 'down').map(([name]) => name)
    if (down.length === 0) return { status: 'ready', ...status }
    request.log.warn({ down }, 'not ready')
    return reply.code(503).send({ error: 'unavailable', message: `unreachable: ${down.join(', ')}`, ...status })
  })
}

async function probe(check: () => Promise<unknown>): Promise<'up' | 'down'> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), readyTimeoutMs)
  })
  try {
    await Promise.race([check(), timeout])
    return 'up'
  } catch {
    return 'down'
  } finally {
    clearTimeout(timer)
  }
}
