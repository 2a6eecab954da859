import { parseCookie, stringifySetCookie } from 'cookie'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../config.js'
import { ErrorBody, Forbidden, Unauthorized, within } from './errors.js'

export const sessionCookie = 'tandem_session'

/**
 * The session cookie on an answer: HttpOnly, SameSite=Lax, for the whole site, Secure as asked. Set
 * here, not by a cookie plugin: its two hooks (parse every request's cookies, write them out on every
 * answer) ran on every request of every route, for the few routes that use this one cookie.
 */
export function setSessionCookie(
  reply: FastifyReply,
  token: string,
  { secure, expires }: { secure: boolean; expires: Date }
) {
  reply.header(
    'set-cookie',
    stringifySetCookie({
      name: sessionCookie,
      value: token,
      path: '/',
      httpOnly: true,
      sameSite: 'lax',
      secure,
      expires
    })
  )
}

/** Tells the browser to drop the session cookie. */
export function clearSessionCookie(reply: FastifyReply) {
  setSessionCookie(reply, '', { secure: false, expires: new Date(0) })
}

/** Who made a request with a live session. */
export type Caller = { id: number; email: string }

/**
 * Where sessions live: the accounts module, which owns their tables, implements it
 * (modules/accounts/sessions.ts). A session's `key` is what it is known by in end notices and sweeps.
 */
export interface SessionStore {
  /** The live session's user, or undefined (unknown, expired or idle too long). */
  userOf(token: string): Promise<Caller | undefined>
  keyOf(token: string): string
  /** Which of `keys` are still live, in one round trip. */
  live(keys: string[]): Promise<Set<string>>
  /**
   * Calls `onEnd(key)` for every session ended anywhere (logout, password change); `onListen` each time
   * the listening starts, again after a lost connection. Rejects when it cannot start listening now.
   */
  listen(onEnd: (key: string) => void, onListen: () => void): Promise<{ unlisten(): Promise<void> }>
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `app.authenticate` for routes that need a session. */
    user: Caller | null
    sessionToken: string | null
    /** The user of a route declared `auth: 'required'`: there is always one by the time a handler runs. */
    readonly caller: Caller
  }
  interface FastifyContextConfig {
    /**
     * `required`: 401 without a live session, and the route's OpenAPI security and 401 (and, for
     * writes, the 403 of a cross-site one) follow; `optional`: open to anyone, `request.user` set when
     * a live session comes along. Declared once here instead of a hook, a schema entry and an answer each.
     */
    auth?: 'required' | 'optional'
  }
  interface FastifyInstance {
    /** onRequest hook: 401 without a live session (Bearer token or session cookie). */
    authenticate(request: FastifyRequest, reply: FastifyReply): Promise<void>
    /**
     * onRequest hook for routes open to anyone that grant more to a user: sets request.user when a
     * live session comes along, and otherwise lets the request through as anonymous.
     */
    identify(request: FastifyRequest, reply: FastifyReply): Promise<void>
    /**
     * Calls `onEnd` once when the session of `token` ends (logout, password change, expiry, idleness),
     * whichever replica ended it; resolves to the function that stops watching. For responses that
     * stay open, like event streams, which must not outlive the session they were opened with.
     * Rejects with 503 when PostgreSQL cannot be listened to within 3 s.
     */
    watchSession(token: string, onEnd: () => void): Promise<() => void>
  }
}

export interface AuthOptions {
  sessions: SessionStore
  config: Pick<Config, 'sessionIdleMs' | 'sessionTtlMs' | 'publicUrl'>
}

const safeMethods = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * Authentication for every module: the token comes as `Authorization: Bearer` or as the HttpOnly
 * cookie, and `sessions` (the accounts module's store, which owns the tables) says whose it is.
 */
export const authPlugin = fp(
  async (app: FastifyInstance, { sessions, config }: AuthOptions) => {
    const publicHost = config.publicUrl === undefined ? undefined : new URL(config.publicUrl).host
    app.decorateRequest('user', null)
    app.decorateRequest('sessionToken', null)
    app.decorateRequest('caller', {
      getter() {
        if (!this.user) throw new Unauthorized()
        return this.user
      }
    })

    /** Sets request.user from a live session, or says why there is none. */
    async function resolve(request: FastifyRequest): Promise<'no-token' | 'cross-site' | 'invalid' | undefined> {
      const { token, ambient } = presentedToken(request)
      if (!token) return 'no-token'
      // A cookie rides along on cross-site requests too: its writes are not the caller's intent.
      if (ambient && isCrossSiteWrite(request, publicHost)) return 'cross-site'
      const user = await sessions.userOf(token)
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
    app.decorate('identify', async (request: FastifyRequest) => {
      await resolve(request)
    })

    // The route option `auth` becomes the hook that runs first (before the body is even read) and
    // what the OpenAPI document says of it.
    app.addHook('onRoute', (route) => {
      const auth = route.config?.auth
      if (!auth) return
      const hook = auth === 'required' ? app.authenticate : app.identify
      route.onRequest = [hook, ...[route.onRequest ?? []].flat()]
      if (auth !== 'required' || !route.schema) return
      route.schema.security = [{ bearer: [] }]
      const write = ![route.method].flat().every((method) => safeMethods.has(method))
      route.schema.response = { 401: ErrorBody, ...(write && { 403: ErrorBody }), ...(route.schema.response as object) }
    })

    const ends = sessionEnds(sessions, app.log, config)
    app.decorate('watchSession', ends.watch)
    app.addHook('onClose', ends.close)
  },
  { name: 'auth' }
)

const listenTimeoutMs = 3000
const longestSweepMs = 15_000

/**
 * Who watches which session, on this process. A logout or a password change deletes the session's row
 * and the store notifies every replica (accounts: one LISTEN); expiry and idleness change no
 * row, so a sweep asks the store, in one query for all watched sessions, which are still live. It runs
 * every 15 s, or every quarter of the session lifetime when sessions are configured to live shorter
 * than a minute, and again whenever the LISTEN connection comes back (ends sent meanwhile went unheard).
 * A session ended between its check at the start of the request and the start of watching is also
 * found by the sweep.
 */
function sessionEnds(
  sessions: SessionStore,
  log: FastifyBaseLogger,
  { sessionIdleMs, sessionTtlMs }: AuthOptions['config']
) {
  const watchers = new Map<string, Set<() => void>>()
  let listened: Promise<void> | undefined
  let unlisten: (() => Promise<void>) | undefined
  let listenedBefore = false
  let sweeping = false

  /** Resolves once PostgreSQL has first said it listens; registered once per process (postgres.js re-listens by itself). */
  function listen() {
    listened ??= new Promise((resolve) => {
      sessions
        .listen(end, () => {
          resolve()
          if (listenedBefore) void sweep()
          listenedBefore = true
        })
        .then(
          (listener) => {
            unlisten = listener.unlisten
          },
          (error: Error) => log.warn({ err: error.message }, 'not listening for session ends yet; retrying')
        )
    })
    return listened
  }

  function end(hash: string) {
    const onEnds = watchers.get(hash)
    if (!onEnds) return
    watchers.delete(hash)
    for (const onEnd of onEnds) onEnd()
  }

  async function sweep() {
    const hashes = [...watchers.keys()]
    if (hashes.length === 0 || sweeping) return
    sweeping = true
    try {
      const liveHashes = await sessions.live(hashes)
      for (const hash of hashes) if (!liveHashes.has(hash)) end(hash)
    } catch (error) {
      log.warn(
        { err: (error as Error).message },
        'could not check the watched sessions; trying again at the next sweep'
      )
    } finally {
      sweeping = false
    }
  }

  const sweepMs = Math.min(longestSweepMs, Math.min(sessionIdleMs, sessionTtlMs) / 4)
  const timer = setInterval(() => void sweep(), sweepMs).unref()

  return {
    async watch(token: string, onEnd: () => void) {
      await within(listen(), listenTimeoutMs, 'session ends cannot be heard now, retry shortly')
      const hash = sessions.keyOf(token)
      const onEnds = watchers.get(hash) ?? new Set()
      watchers.set(hash, onEnds.add(onEnd))
      return () => {
        onEnds.delete(onEnd)
        if (onEnds.size === 0 && watchers.get(hash) === onEnds) watchers.delete(hash)
      }
    },

    async close() {
      clearInterval(timer)
      await unlisten?.().catch(() => undefined)
    }
  }
}

/** The Bearer token, else the cookie (`ambient`: the browser sends it by itself). */
function presentedToken(request: FastifyRequest): { token: string | undefined; ambient: boolean } {
  const bearer = /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '')?.[1]
  if (bearer) return { token: bearer, ambient: false }
  const cookies = request.headers.cookie
  return { token: cookies ? parseCookie(cookies)[sessionCookie] : undefined, ambient: true }
}

function isCrossSiteWrite(request: FastifyRequest, publicHost: string | undefined): boolean {
  return !safeMethods.has(request.method) && isCrossSite(request, publicHost)
}

/**
 * Whether a browser sent this from another site. Sec-Fetch-Site says so where the browser sends it
 * (HTTPS, localhost); over plain HTTP at a LAN address it does not, and the page's Origin is compared
 * with the host and port the request was made to: the Host header, or the trusted proxy's
 * X-Forwarded-Host (nginx forwards both as the browser sent them), or PUBLIC_URL's.
 */
function isCrossSite(request: FastifyRequest, publicHost: string | undefined): boolean {
  const site = request.headers['sec-fetch-site']
  if (site) return site !== 'same-origin' && site !== 'none'
  const origin = request.headers.origin
  if (!origin) return false // not a browser: no ambient cookie to abuse
  let host: string
  try {
    host = new URL(origin).host
  } catch {
    return true
  }
  return host !== request.host && host !== publicHost
}
