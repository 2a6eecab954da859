import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Config } from '../../config.js'
import type { Sql } from '../../db/pool.js'
import { Conflict, Unauthorized } from '../../platform/errors.js'
import { hashPassword, unknownUserHash, verifyPassword } from './passwords.js'
import { closeSession, findLogin, insertUser, openSession } from './queries.js'
import { Credentials, CurrentSession, ErrorBody, NewSession, User } from './schema.js'
import { sessionCookie } from './sessions.js'

export interface AccountsOptions {
  sql: Sql
  config: Pick<Config, 'production' | 'sessionTtlMs'>
}

/** Users and sessions: register, log in, who am I, log out. */
export const accountsRoutes: FastifyPluginAsyncTypebox<AccountsOptions> = async (app, { sql, config }) => {
  app.post('/api/users', {
    schema: {
      tags: ['accounts'],
      summary: 'Register a user',
      body: Credentials,
      response: { 201: User, 409: ErrorBody, 422: ErrorBody }
    }
  }, async (request, reply) => {
    const email = request.body.email.toLowerCase()
    const user = await insertUser(sql, email, await hashPassword(request.body.password))
    if (!user) throw new Conflict('email-taken', 'an account with this email exists')
    return reply.code(201).send(user)
  })

  app.post('/api/sessions', {
    schema: {
      tags: ['accounts'],
      summary: 'Log in: a session token, also set as an HttpOnly cookie',
      body: Credentials,
      response: { 201: NewSession, 401: ErrorBody, 422: ErrorBody }
    }
  }, async (request, reply) => {
    const login = await findLogin(sql, request.body.email.toLowerCase())
    const valid = await verifyPassword(request.body.password, login?.passwordHash ?? unknownUserHash)
    if (!login || !valid) throw new Unauthorized('wrong email or password')
    const { token, expiresAt } = await openSession(sql, login.id, config.sessionTtlMs)
    reply.setCookie(sessionCookie, token, {
      path: '/',
      httpOnly: true,
      sameSite: 'lax',
      secure: config.production,
      expires: expiresAt
    })
    return reply.code(201).send({ token, userId: login.id, expiresAt: expiresAt.toISOString() })
  })

  app.get('/api/sessions', {
    onRequest: app.authenticate,
    schema: {
      tags: ['accounts'],
      summary: 'The current session',
      security: [{ bearer: [] }],
      response: { 200: CurrentSession, 401: ErrorBody }
    }
  }, async (request) => ({ userId: request.user!.id, email: request.user!.email }))

  app.delete('/api/sessions', {
    onRequest: app.authenticate,
    schema: {
      tags: ['accounts'],
      summary: 'Log out: the session is refused by every replica from now on',
      security: [{ bearer: [] }],
      response: { 204: Type.Null({ description: 'logged out' }), 401: ErrorBody }
    }
  }, async (request, reply) => {
    await closeSession(sql, request.sessionToken!)
    reply.clearCookie(sessionCookie, { path: '/' })
    return reply.code(204).send(null)
  })
}
