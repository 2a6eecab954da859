import type { FastifyPluginAsync } from 'fastify'
import type { Sql } from '../db/pool.js'

const readyTimeoutMs = 1000

/** `/health`: the process answers. `/ready`: and its database does, within a second. */
export const healthRoutes: FastifyPluginAsync<{ sql: Sql }> = async (app, { sql }) => {
  app.get('/health', async () => ({ status: 'ok' }))

  app.get('/ready', async (request, reply) => {
    try {
      await Promise.race([
        sql`select 1`,
        new Promise((_resolve, reject) => setTimeout(() => reject(new Error('timed out')), readyTimeoutMs).unref())
      ])
      return { status: 'ready', database: 'up' }
    } catch (error) {
      request.log.warn({ err: (error as Error).message }, 'not ready: database unreachable')
      return reply.code(503).send({ error: 'unavailable', message: 'database unreachable', database: 'down' })
    }
  })
}
