import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import { IdempotencyHeaders } from './idempotency.js'

/** The OpenAPI document is generated from the route schemas: `/openapi.json`, and Swagger UI at `/documentation`. */
export const docsPlugin = fp(
  async (app: FastifyInstance) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Tandem',
          description:
            'A horizontally scalable backend: crebitos (Rinha de Backend 2024/Q1), the cluster counter, and more.',
          version: '0.1.0'
        },
        components: {
          // Routes that need a session say `security: [{ bearer: [] }]`; the web UI sends the same token as the HttpOnly cookie.
          securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } }
        }
      },
      hideUntagged: true,
      // Idempotency-Key is documented on the routes that take it but checked only when it comes (the
      // idempotency plugin), so a request without it pays no header validation.
      transform: ({ schema, url, route }) =>
        route.config?.idempotent ? { schema: { ...schema, headers: IdempotencyHeaders }, url } : { schema, url }
    })
    await app.register(swaggerUi, { routePrefix: '/documentation' })
    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
  },
  { name: 'docs' }
)
