import type { Sql } from '../../db/pool.js'
import type { SessionStore } from '../../platform/auth.js'
import { findSessionUser, hashToken } from './queries.js'

const endsChannel = 'session_ends'

/**
 * The platform's sessions (platform/auth.ts), kept in the accounts module's tables: a logout or a
 * password change deletes a session's row and 008_session_ends.sql notifies every replica on
 * `session_ends`; expiry and idleness follow the rule of findSessionUser.
 */
export function sessionStore(sql: Sql, { sessionIdleMs }: { sessionIdleMs: number }): SessionStore {
  return {
    userOf: (token) => findSessionUser(sql, token, sessionIdleMs),
    keyOf: (token) => hashToken(token).toString('hex'),
    async live(keys) {
      const live = await sql<{ hash: string }[]>`
        select encode(token_hash, 'hex') as hash from sessions
         where token_hash in (select decode(hash, 'hex') from unnest(${keys}::text[]) as hash)
           and expires_at > now()
           and last_used_at > now() - make_interval(secs => ${sessionIdleMs / 1000})`
      return new Set(live.map((row) => row.hash))
    },
    listen: (onEnd, onListen) => sql.listen(endsChannel, onEnd, onListen)
  }
}
