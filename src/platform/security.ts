import helmet from '@fastify/helmet'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'

/**
 * The Content-Security-Policy of every answer (HTML pages, Swagger UI and the API alike): scripts and
 * styles from this origin only, never framed. No `upgrade-insecure-requests`: a classroom may reach
 * the server over plain HTTP on a LAN address.
 */
export const contentSecurityPolicy = {
  'default-src': ["'self'"],
  'script-src': ["'self'"],
  'style-src': ["'self'"],
  'img-src': ["'self'", 'data:'],
  'connect-src': ["'self'"],
  'object-src': ["'none'"],
  'frame-ancestors': ["'none'"],
  'base-uri': ["'self'"],
  'form-action': ["'self'"]
}

export const contentSecurityPolicyHeader = Object.entries(contentSecurityPolicy)
  .map(([directive, sources]) => `${directive} ${sources.join(' ')}`).join('; ')

const hstsMaxAgeSeconds = 180 * 86_400

/**
 * Security headers on every response (helmet: nosniff, CSP, frame and referrer policies), HSTS only
 * when the browser came over HTTPS (a plain-HTTP deployment must stay reachable), and
 * `Cache-Control: no-store` on every answer that carried or made a session: no shared cache keeps it.
 */
export const securityPlugin = fp(async (app: FastifyInstance) => {
  await app.register(helmet, {
    contentSecurityPolicy: { useDefaults: false, directives: contentSecurityPolicy },
    hsts: false,
    referrerPolicy: { policy: 'same-origin' },
    xFrameOptions: { action: 'deny' },
    // Headers for browsers long gone (IE, Flash) or that change nothing here: bytes on every answer.
    originAgentCluster: false,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false
  })
  app.addHook('onSend', async (request, reply) => {
    if (request.protocol === 'https') reply.header('strict-transport-security', `max-age=${hstsMaxAgeSeconds}; includeSubDomains`)
    if (request.user || request.headers.authorization || reply.hasHeader('set-cookie')) reply.header('cache-control', 'no-store')
  })
}, { name: 'security', dependencies: ['sessions'] })
