import { createHash, randomBytes } from 'node:crypto'
import type { Sql } from '../../db/pool.js'

export interface SessionUser {
  id: number
  email: string
}

export const hashToken = (token: string) => createHash('sha256').update(token).digest()

/** Inserts the user; undefined when the email is taken (the unique constraint decides, not a prior read). */
export async function insertUser(sql: Sql, email: string, passwordHash: string): Promise<SessionUser | undefined> {
  const [user] = await sql<SessionUser[]>`
    insert into users (email, password_hash) values (${email}, ${passwordHash})
    on conflict (email) do nothing
    returning id, email`
  return user
}

export async function findLogin(sql: Sql, email: string) {
  const [user] = await sql<{ id: number, passwordHash: string }[]>`
    select id, password_hash as "passwordHash" from users where email = ${email}`
  return user
}

/** A new session: 256 random bits, of which only the hash is stored. */
export async function openSession(sql: Sql, userId: number, ttlMs: number) {
  const token = randomBytes(32).toString('base64url')
  const [session] = await sql<{ expiresAt: Date }[]>`
    insert into sessions (token_hash, user_id, expires_at)
    values (${hashToken(token)}, ${userId}, now() + make_interval(secs => ${ttlMs / 1000}))
    returning expires_at as "expiresAt"`
  return { token, expiresAt: session.expiresAt }
}

/**
 * The live session's user, in one round trip. A session dies `idleMs` after its last use or at its
 * expiry. Its last use is written at most once a minute, so most requests only read.
 */
export async function findSessionUser(sql: Sql, token: string, idleMs: number): Promise<SessionUser | undefined> {
  const [user] = await sql<SessionUser[]>`
    with live as (
      select user_id, last_used_at from sessions
       where token_hash = ${hashToken(token)}
         and expires_at > now()
         and last_used_at > now() - make_interval(secs => ${idleMs / 1000})
    ), touched as (
      update sessions set last_used_at = now()
       where token_hash = ${hashToken(token)}
         and (select last_used_at from live) < now() - interval '1 minute'
    )
    select u.id, u.email from live join users u on u.id = live.user_id`
  return user
}

export async function closeSession(sql: Sql, token: string) {
  await sql`delete from sessions where token_hash = ${hashToken(token)}`
}
