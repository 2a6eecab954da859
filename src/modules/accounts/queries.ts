import { createHash, randomBytes } from 'node:crypto'
import type postgres from 'postgres'
import type { Static } from 'typebox'
import type { Queryable, Sql } from '../../db/pool.js'
import type { ProfileChange, User } from './schema.js'

/** Who a session belongs to. */
export type SessionUser = { id: number; email: string }

/**
 * A user's name as pages show it ("First Last"), for another module's statement: it reads users
 * through this rather than joining accounts' table, and stays one statement. `userId`: the SQL
 * expression of the id (e.g. sql`s.creator_id`).
 */
export function displayNameOf(sql: Queryable, userId: postgres.Fragment) {
  return sql`(select btrim(u.first_name || ' ' || u.last_name) from users u where u.id = ${userId})`
}

export const hashToken = (token: string) => createHash('sha256').update(token).digest()

/** A session token: 256 random bits, of which only the hash is stored. */
const newToken = () => randomBytes(32).toString('base64url')

export type Profile = Static<typeof User>
export type Names = Static<typeof ProfileChange>

/** Inserts the user; undefined when the email is taken (the unique constraint decides, not a prior read). */
export async function insertUser(
  sql: Queryable,
  email: string,
  passwordHash: string,
  names: Names
): Promise<Profile | undefined> {
  const [user] = await sql<Profile[]>`
    insert into users (email, password_hash, first_name, last_name)
    values (${email}, ${passwordHash}, ${names.firstName ?? ''}, ${names.lastName ?? ''})
    on conflict (email) do nothing
    returning id, email, first_name as "firstName", last_name as "lastName"`
  return user
}

export async function findProfile(sql: Sql, userId: number): Promise<Profile | undefined> {
  const [user] = await sql<Profile[]>`
    select id, email, first_name as "firstName", last_name as "lastName" from users where id = ${userId}`
  return user
}

/** Sets the names given and keeps the others, in one statement. */
export async function updateNames(sql: Sql, userId: number, names: Names): Promise<Profile | undefined> {
  const [user] = await sql<Profile[]>`
    update users
       set first_name = coalesce(${names.firstName ?? null}::text, first_name),
           last_name = coalesce(${names.lastName ?? null}::text, last_name)
     where id = ${userId}
    returning id, email, first_name as "firstName", last_name as "lastName"`
  return user
}

export async function findPasswordHash(sql: Sql, userId: number): Promise<string | undefined> {
  const [user] = await sql<
    { passwordHash: string }[]
  >`select password_hash as "passwordHash" from users where id = ${userId}`
  return user?.passwordHash
}

/**
 * Replaces the password the caller proved to know, ends every session of the user (the caller's
 * included: whoever else held its token is out too) and opens a fresh one for the caller, in one
 * statement. Undefined when the hash changed since it was verified (a racing change won): nothing happens.
 */
export async function replacePassword(sql: Sql, userId: number, verifiedHash: string, newHash: string, ttlMs: number) {
  const token = newToken()
  // The delete works on the statement's snapshot, which does not hold the session inserted beside it.
  const [session] = await sql<{ expiresAt: Date }[]>`
    with changed as (
      update users set password_hash = ${newHash}
       where id = ${userId} and password_hash = ${verifiedHash}
      returning id
    ), revoked as (
      delete from sessions where user_id in (select id from changed)
    )
    insert into sessions (token_hash, user_id, expires_at)
    select ${hashToken(token)}, id, now() + make_interval(secs => ${ttlMs / 1000}) from changed
    returning expires_at as "expiresAt"`
  return session && { token, expiresAt: session.expiresAt }
}

/**
 * Counts one wrong current password against the session; at `maxFailures` in a row the session is
 * deleted. True when it was. The update's row lock orders racing failures, so none goes uncounted.
 */
export async function countPasswordFailure(sql: Sql, token: string, maxFailures: number): Promise<boolean> {
  return sql.begin(async (tx) => {
    const [session] = await tx<{ failures: number }[]>`
      update sessions set password_failures = password_failures + 1
       where token_hash = ${hashToken(token)}
      returning password_failures as failures`
    if (!session || session.failures < maxFailures) return false
    await tx`delete from sessions where token_hash = ${hashToken(token)}`
    return true
  })
}

export async function findLogin(sql: Sql, email: string) {
  const [user] = await sql<{ id: number; passwordHash: string }[]>`
    select id, password_hash as "passwordHash" from users where email = ${email}`
  return user
}

export async function openSession(sql: Sql, userId: number, ttlMs: number) {
  const token = newToken()
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

/**
 * Deletes up to `batch` sessions that `findSessionUser` would refuse anyway (expired, or idle beyond
 * `idleMs`); the number deleted. Bounded so a large backlog never holds locks past the statement
 * timeout; SKIP LOCKED lets replicas sweeping at once split the rows instead of queueing on them.
 */
/** Sessions not expired and used within `idleMs`, over the whole cluster. */
export async function countLiveSessions(sql: Sql, idleMs: number): Promise<number> {
  const [{ count }] = await sql<{ count: number }[]>`
    select count(*)::int as count from sessions
     where expires_at > now() and last_used_at > now() - make_interval(secs => ${idleMs / 1000})`
  return count
}

export async function pruneSessions(sql: Sql, idleMs: number, batch = 10_000): Promise<number> {
  const result = await sql`
    delete from sessions
     where token_hash in (
       select token_hash from sessions
        where expires_at <= now() or last_used_at <= now() - make_interval(secs => ${idleMs / 1000})
        limit ${batch}
          for update skip locked)`
  return result.count
}
