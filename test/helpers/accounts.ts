import { randomBytes } from 'node:crypto'
import { request } from './http.js'

export const newEmail = () => `user-${randomBytes(5).toString('hex')}@example.com`

/** Registers a fresh user (with names, if given) and logs in: the bearer token and the cookie header of that session. */
export async function signUp(
  base: string,
  password = 'correct horse battery',
  names: { firstName?: string; lastName?: string } = {}
) {
  const email = newEmail()
  const created = await request(base, 'POST', '/api/users', { json: { email, password, ...names } })
  if (created.status !== 201) throw new Error(`register failed: ${created.status} ${created.text}`)
  const login = await request(base, 'POST', '/api/sessions', { json: { email, password } })
  if (login.status !== 201) throw new Error(`login failed: ${login.status} ${login.text}`)
  const token: string = login.body.token
  return {
    email,
    password,
    userId: created.body.id as number,
    token,
    bearer: { authorization: `Bearer ${token}` },
    cookie: { cookie: `tandem_session=${token}` },
    setCookie: login.headers.get('set-cookie') ?? ''
  }
}
