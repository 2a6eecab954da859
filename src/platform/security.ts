import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'

/**
 * The Content-Security-Policy of every page (the web UI and Swagger UI): scripts and styles from this
 * origin only, never framed. No `upgrade-insecure-requests`: a classroom may reach the server over
 * plain HTTP on a LAN address.
 */
export const contentSecurityPolicyHeader = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "base-uri 'self'",
  "form-action 'self'"
].join('; ')

/** What a page gets beyond nosniff: its policy, never framed, no referrer to other sites, its own browsing context. */
export const pageHeaders: Record<string, string> = {
  'content-security-policy': contentSecurityPolicyHeader,
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin'
}

const hstsHeader = `max-age=${180 * 86_400}; includeSubDomains`

/**
 * Security headers, decided once per answer in one synchronous hook (helmet's per-request middleware
 * cost a tenth of the throughput of the Rinha routes, for headers that never change):
 * `X-Content-Type-Options: nosniff` on every response; the page headers on every HTML answer (pages,
 * Swagger UI, error pages); HSTS only when the browser came over HTTPS (a plain-HTTP deployment must
 * stay reachable); `Cache-Control: no-store` on every answer that carried or made a session; the
 * request's id as `X-Request-Id`, to find its log lines.
 */
export const securityPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook('onSend', (request, reply, payload, done) => {
      reply.header('x-content-type-options', 'nosniff')
      reply.header('x-request-id', request.id)
      const type = reply.getHeader('content-type')
      if (typeof type === 'string' && type.startsWith('text/html')) reply.headers(pageHeaders)
      if (request.user || request.headers.authorization !== undefined || reply.hasHeader('set-cookie'))
        reply.header('cache-control', 'no-store')
      if (request.protocol === 'https') reply.header('strict-transport-security', hstsHeader)
      done(null, payload)
    })
  },
  { name: 'security', dependencies: ['auth'] }
)
