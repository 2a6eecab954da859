import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Config } from '../../config.js'
import type { Sql } from '../../db/pool.js'
import { Conflict, ErrorBody, Forbidden, NotFound, Unauthorized } from '../../platform/errors.js'
import { trimTexts } from '../../platform/validation.js'
import { hashPassword, unknownUserHash, verifyPassword } from './passwords.js'
import {
  closeSession, findLogin, findPasswordHash, findProfile, insertUser, openSession, replacePassword, updateNames, type Names
} from './queries.js'
import { Credentials, CurrentSession, NewSession, NewUser, PasswordChange, ProfileChange, User } from './schema.js'
import { sessionCookie } from './sessions.js'

export interface AccountsOptions {
  sql: Sql
  config: Pick<Config, 'production' | 'sessionTtlMs' | 'loginLimitPerMinute'>
}

const trimNames = (names: Names) => trimTexts(
  { firstName: names.firstName, lastName: names.lastName },
  { firstName: [1, 100], lastName: [1, 100] }
)

/** Users and sessions: register, log in, who am I, log out, profile and password. */
export const accountsRoutes: FastifyPluginAsyncTypebox<AccountsOptions> = async (app, { sql, config }) => {
  app.post('/api/users', {
    schema: {
      tags: ['accounts'],
      summary: 'Register a user',
      body: NewUser,
      response: { 201: User, 409: ErrorBody, 422: ErrorBody }
    }
  }, async (request, reply) => {
    const names = trimNames(request.body)
    const email = request.body.email.toLowerCase()
    const user = await insertUser(sql, email, await hashPassword(request.body.password), names)
    if (!user) throw new Conflict('email-taken', 'an account with this email exists')
    return reply.code(201).send(user)
  })

  app.post('/api/sessions', {
    schema: {
      tags: ['accounts'],
      summary: 'Log in: a session token, also set as an HttpOnly cookie',
      body: Credentials,
      response: { 201: NewSession, 401: ErrorBody, 422: ErrorBody, 429: ErrorBody }
    }
  }, async (request, reply) => {
    const email = request.body.email.toLowerCase()
    // Booked before the slow hash: a guesser is refused cheaply, on every replica.
    await app.rateLimit(`login:${request.ip}:${email}`, config.loginLimitPerMinute)
    const login = await findLogin(sql, email)
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

  app.get('/api/users/me', {
    onRequest: app.authenticate,
    schema: {
      tags: ['accounts'],
      summary: "The caller's profile",
      security: [{ bearer: [] }],
      response: { 200: User, 401: ErrorBody }
    }
  }, async (request) => {
    const user = await findProfile(sql, request.user!.id)
    if (!user) throw new NotFound('user')
    return user
  })

  app.patch('/api/users/me', {
    onRequest: app.authenticate,
    schema: {
      tags: ['accounts'],
      summary: 'Change the first and/or last name (a name left out is kept)',
      security: [{ bearer: [] }],
      body: ProfileChange,
      response: { 200: User, 401: ErrorBody, 422: ErrorBody }
    }
  }, async (request) => {
    const user = await updateNames(sql, request.user!.id, trimNames(request.body))
    if (!user) throw new NotFound('user')
    return user
  })

  app.put('/api/users/me/password', {
    onRequest: app.authenticate,
    schema: {
      tags: ['accounts'],
      summary: "Change the password; every other session of the user ends, the caller's stays",
      security: [{ bearer: [] }],
      body: PasswordChange,
      response: { 204: Type.Null({ description: 'password changed' }), 401: ErrorBody, 403: ErrorBody, 422: ErrorBody }
    }
  }, async (request, reply) => {
    const userId = request.user!.id
    const currentHash = await findPasswordHash(sql, userId)
    const valid = currentHash !== undefined && await verifyPassword(request.body.currentPassword, currentHash)
    if (!valid) throw new Forbidden('the current password is wrong')
    const changed = await replacePassword(sql, userId, currentHash, await hashPassword(request.body.newPassword), request.sessionToken!)
    if (!changed) throw new Forbidden('the password was changed meanwhile; the current password is wrong')
    return reply.code(204).send(null)
  })
}
