import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import fp from 'fastify-plugin'
import type { FastifyReply } from 'fastify'
import { Type } from 'typebox'
import type { Config } from '../../config.js'
import type { Queryable, Sql } from '../../db/pool.js'
import { Counter, Gauge } from 'prom-client'
import { Conflict, ErrorBody, Forbidden, NotFound, Unauthorized, within } from '../../platform/errors.js'
import { idempotencyHeader } from '../../platform/idempotency.js'
import { passwordHasher, unknownUserHash } from './passwords.js'
import {
  closeSession,
  countLiveSessions,
  countPasswordFailure,
  findLogin,
  findPasswordHash,
  findProfile,
  insertUser,
  openSession,
  pruneSessions,
  replacePassword,
  updateNames
} from './queries.js'
import {
  Credentials,
  CurrentSession,
  NewSession,
  NewUser,
  PasswordChange,
  ProfileChange,
  RotatedSession,
  User
} from './schema.js'
import { clearSessionCookie, setSessionCookie } from '../../platform/auth.js'

export interface AccountsOptions {
  sql: Sql
  config: Pick<
    Config,
    | 'cookieSecure'
    | 'sessionTtlMs'
    | 'sessionIdleMs'
    | 'loginLimitPerMinute'
    | 'loginAddressLimitPerMinute'
    | 'loginEmailLimitPerMinute'
    | 'registrationLimitPerMinute'
    | 'registrationTotalLimitPerMinute'
    | 'passwordChangeLimitPerMinute'
    | 'passwordChangeMaxFailures'
    | 'passwordHashConcurrency'
    | 'passwordHashQueueMax'
  >
}

/** Users and sessions: register, log in, who am I, log out, profile and password. */
const routes: FastifyPluginAsyncTypebox<AccountsOptions> = async (app, { sql, config }) => {
  const hasher = passwordHasher({ concurrency: config.passwordHashConcurrency, queueMax: config.passwordHashQueueMax })

  // Secure as the browser's own scheme by default: a Secure cookie sent over plain HTTP is dropped by
  // the browser, and the login would silently loop (the web UI checks and says so, should it be forced).
  const giveSessionCookie = (reply: FastifyReply, { token, expiresAt }: { token: string; expiresAt: Date }) => {
    const https = reply.request.protocol === 'https'
    const secure = config.cookieSecure === 'auto' ? https : config.cookieSecure
    if (secure && !https)
      reply.request.log.warn('COOKIE_SECURE=true over plain HTTP: the browser will not keep the session cookie')
    setSessionCookie(reply, token, { secure, expires: expiresAt })
  }

  const logins = new Counter({
    name: 'tandem_accounts_logins_total',
    help: 'Logins by outcome: ok (a session opened) or wrong (email or password); refused ones are in tandem_rate_limit_refused_total',
    labelNames: ['outcome'],
    registers: [app.metrics]
  })
  for (const outcome of ['ok', 'wrong']) logins.inc({ outcome }, 0)
  new Gauge({
    name: 'tandem_accounts_sessions_active',
    help: 'Live sessions over the whole cluster (not expired, used within SESSION_IDLE_MS), counted at each scrape',
    registers: [app.metrics],
    aggregator: 'max', // a cluster-wide figure: the workers of `start` each count the same sessions
    async collect() {
      const count = await within(countLiveSessions(sql, config.sessionIdleMs), 1000, 'session count').catch(
        () => undefined
      )
      if (count !== undefined) this.set(count)
    }
  })

  // Every replica sweeps, like the rate limits; a sweep more often than a session can go idle would find nothing new.
  const pruneTimer = setInterval(
    () => {
      pruneSessions(sql, config.sessionIdleMs).catch((error: Error) =>
        app.log.warn({ err: error.message }, 'could not prune the sessions')
      )
    },
    Math.min(60_000, config.sessionIdleMs)
  ).unref()
  app.addHook('onClose', async () => clearInterval(pruneTimer))

  app.post(
    '/api/users',
    {
      config: { idempotent: true },
      schema: {
        tags: ['accounts'],
        summary: 'Register a user',
        body: NewUser,
        response: { 201: User, 409: ErrorBody, 429: ErrorBody }
      }
    },
    async (request, reply) => {
      const names = { firstName: request.body.firstName, lastName: request.body.lastName }
      const email = request.body.email.toLowerCase()
      // Booked before the 32 MiB hash. The address first: one over its own limit spends none of the total.
      await app.rateLimit(`register:${request.ip}`, config.registrationLimitPerMinute)
      await app.rateLimit('register-total', config.registrationTotalLimitPerMinute)
      const passwordHash = await hasher.hash(request.body.password)
      const register = async (db: Queryable) => {
        const user = await insertUser(db, email, passwordHash, names)
        if (!user) throw new Conflict('email-taken', 'an account with this email exists')
        return user
      }
      if (request.headers[idempotencyHeader] === undefined) return reply.code(201).send(await register(sql))
      // The password stays out of the fingerprint, which is stored: a fast hash of it would be a secret
      // given away. A retry that changes only the password replays the account the first one made.
      const { password: _password, ...fingerprint } = request.body
      await app.idempotent(request, reply, {
        scope: `address:${request.ip}`,
        status: 201,
        fingerprint,
        write: register
      })
      return reply
    }
  )

  app.post(
    '/api/sessions',
    {
      schema: {
        tags: ['accounts'],
        summary: 'Log in: a session token, also set as an HttpOnly cookie',
        body: Credentials,
        response: { 201: NewSession, 429: ErrorBody }
      }
    },
    async (request, reply) => {
      const email = request.body.email.toLowerCase()
      // Booked before the slow hash, so a guesser is refused cheaply on every replica; narrowest first, so
      // an attempt refused for its address books nothing against the email: a guesser spraying from one
      // address does not use up the allowance its victims have from everywhere else.
      await app.rateLimit(`login:${request.ip}:${email}`, config.loginLimitPerMinute)
      await app.rateLimit(`login-address:${request.ip}`, config.loginAddressLimitPerMinute)
      await app.rateLimit(`login-email:${email}`, config.loginEmailLimitPerMinute)
      const login = await findLogin(sql, email)
      const valid = await hasher.verify(request.body.password, login?.passwordHash ?? unknownUserHash)
      if (!login || !valid) {
        logins.inc({ outcome: 'wrong' })
        throw new Unauthorized('wrong email or password')
      }
      const session = await openSession(sql, login.id, config.sessionTtlMs)
      logins.inc({ outcome: 'ok' })
      giveSessionCookie(reply, session)
      return reply
        .code(201)
        .send({ token: session.token, userId: login.id, expiresAt: session.expiresAt.toISOString() })
    }
  )

  app.get(
    '/api/sessions',
    {
      config: { auth: 'required' },
      schema: {
        tags: ['accounts'],
        summary: 'The current session',
        response: { 200: CurrentSession }
      }
    },
    async (request) => ({ userId: request.caller.id, email: request.caller.email })
  )

  app.delete(
    '/api/sessions',
    {
      config: { auth: 'required' },
      schema: {
        tags: ['accounts'],
        summary: 'Log out: the session is refused by every replica from now on',
        response: { 204: Type.Null({ description: 'logged out' }) }
      }
    },
    async (request, reply) => {
      await closeSession(sql, request.sessionToken!)
      clearSessionCookie(reply)
      return reply.code(204).send(null)
    }
  )

  app.get(
    '/api/users/me',
    {
      config: { auth: 'required' },
      schema: {
        tags: ['accounts'],
        summary: "The caller's profile",
        response: { 200: User }
      }
    },
    async (request) => {
      const user = await findProfile(sql, request.caller.id)
      if (!user) throw new NotFound('user')
      return user
    }
  )

  app.patch(
    '/api/users/me',
    {
      config: { auth: 'required' },
      schema: {
        tags: ['accounts'],
        summary: 'Change the first and/or last name (a name left out is kept)',
        body: ProfileChange,
        response: { 200: User }
      }
    },
    async (request) => {
      const user = await updateNames(sql, request.caller.id, request.body)
      if (!user) throw new NotFound('user')
      return user
    }
  )

  app.put(
    '/api/users/me/password',
    {
      config: { auth: 'required' },
      schema: {
        tags: ['accounts'],
        summary:
          "Change the password: every session of the user ends, the caller's included, and the caller gets a fresh one",
        description:
          'Answers the new session like a login (token and cookie). Attempts are limited per user (429); ' +
          'after too many wrong current passwords in a row the session making them ends (401).',
        body: PasswordChange,
        response: {
          200: RotatedSession,
          403: ErrorBody,
          429: ErrorBody
        }
      }
    },
    async (request, reply) => {
      const userId = request.caller.id
      const token = request.sessionToken!
      // Right or wrong, each attempt is booked before the hash: the route is no oracle for the password.
      await app.rateLimit(`password-change:${userId}`, config.passwordChangeLimitPerMinute)
      const currentHash = await findPasswordHash(sql, userId)
      const valid = currentHash !== undefined && (await hasher.verify(request.body.currentPassword, currentHash))
      if (!valid) {
        // A stolen token gets a few guesses, not one a minute for as long as the session lives.
        if (await countPasswordFailure(sql, token, config.passwordChangeMaxFailures)) {
          clearSessionCookie(reply)
          throw new Unauthorized('too many wrong passwords: the session has ended, log in again')
        }
        throw new Forbidden('the current password is wrong')
      }
      // Rotated: whoever else holds the old token (the reason to change a password, often) is out too.
      const session = await replacePassword(
        sql,
        userId,
        currentHash,
        await hasher.hash(request.body.newPassword),
        config.sessionTtlMs
      )
      if (!session) throw new Forbidden('the password was changed meanwhile; the current password is wrong')
      giveSessionCookie(reply, session)
      return reply.code(200).send({ token: session.token, userId, expiresAt: session.expiresAt.toISOString() })
    }
  )
}

/**
 * Encapsulated (its hooks and decorators stay its own), and named with the platform plugins it needs:
 * Fastify refuses to start when one is missing or comes after it, rather than app.ts's line order
 * deciding silently (the error and session hooks, and the OpenAPI document, must see its routes).
 */
export const accountsRoutes = fp(routes, {
  name: 'accounts',
  dependencies: ['errors', 'docs', 'metrics', 'auth', 'rate-limit', 'idempotency'],
  encapsulate: true
})
