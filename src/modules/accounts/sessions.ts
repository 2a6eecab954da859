import cookie from '@fastify/cookie'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../../config.js'
import type { Sql } from '../../db/pool.js'
import { Forbidden, Unauthorized } from '../../platform/errors.js'
import { findSessionUser, type SessionUser } from './queries.js'

export const sessionCookie = 'tandem_session'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `app.authenticate` for routes that need a session. */
    user: SessionUser | null
    sessionToken: string | null
  }
  interface FastifyInstance {
    /** onRequest hook: 401 without a live session (Bearer token or session cookie). */
    authenticate(request: FastifyRequest, reply: FastifyReply): Promise<void>
    /**
     * onRequest hook for routes open to anyone that grant more to a user: sets request.user when a
     * live session comes along, and otherwise lets the request through as anonymous.
     */
    identify(request: FastifyRequest, reply: FastifyReply): Promise<void>
  }
}

export interface SessionsOptions {
  sql: Sql
  config: Pick<Config, 'sessionIdleMs'>
}

const safeMethods = new Set(['GET', 'HEAD', 'OPTIONS'])

/** Sessions for every module: the token comes as `Authorization: Bearer` or as the HttpOnly cookie. */
export const sessionsPlugin = fp(async (app: FastifyInstance, { sql, config }: SessionsOptions) => {
  await app.register(cookie)
  app.decorateRequest('user', null)
  app.decorateRequest('sessionToken', null)

  /** Sets request.user from a live session, or says why there is none. */
  async function resolve(request: FastifyRequest): Promise<'no-token' | 'cross-site' | 'invalid' | undefined> {
    const { token, ambient } = presentedToken(request)
    if (!token) return 'no-token'
    // A cookie rides along on cross-site requests too: its writes are not the caller's intent.
    if (ambient && isCrossSiteWrite(request)) return 'cross-site'
    const user = await findSessionUser(sql, token, config.sessionIdleMs)
    if (!user) return 'invalid'
    request.user = user
    request.sessionToken = token
  }

  app.decorate('authenticate', async (request: FastifyRequest) => {
    const problem = await resolve(request)
    if (problem === 'no-token') throw new Unauthorized()
    if (problem === 'cross-site') throw new Forbidden('cross-site request refused')
    if (problem === 'invalid') throw new Unauthorized('session expired or invalid')
  })

  // A caller without a usable session (a cross-site write included) is simply anonymous.
  app.decorate('identify', async (request: FastifyRequest) => { await resolve(request) })
}, { name: 'sessions' })

/** The Bearer token, else the cookie (`ambient`: the browser sends it by itself). */
function presentedToken(request: FastifyRequest): { token: string | undefined, ambient: boolean } {
  const bearer = /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '')?.[1]
  if (bearer) return { token: bearer, ambient: false }
  return { token: request.cookies[sessionCookie], ambient: true }
}

function isCrossSiteWrite(request: FastifyRequest): boolean {
  return !safeMethods.has(request.method) && isCrossSite(request)
}

function isCrossSite(request: FastifyRequest): boolean {
  const site = request.headers['sec-fetch-site']
  if (site) return site !== 'same-origin' && site !== 'none'
  const origin = request.headers.origin
  if (!origin) return false // not a browser: no ambient cookie to abuse
  try {
    return new URL(origin).host !== request.headers.host
  } catch {
    return true
  }
}
