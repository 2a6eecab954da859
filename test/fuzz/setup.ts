/**
 * The valid phase: what a real class would leave behind (teachers, sessions, sheets with students,
 * transactions, increments), plus sessions made dead in each way one can die. Everything the hostile
 * phase aims at comes from here, and the state snapshot is taken after it.
 */
import { readdirSync } from 'node:fs'
import path from 'node:path'
import type { Sql } from '../../src/db/pool.js'
import { hashToken } from '../../src/modules/accounts/queries.js'
import { signUp } from '../helpers/accounts.js'
import { request } from '../helpers/http.js'
import { projectRoot } from '../helpers/processes.js'
import type { Account, Context } from './cases.js'

const password = 'correct horse battery'

/** Names a student might type, hostile ones included: stored verbatim, returned verbatim, CSV-neutralised. */
const studentNames = [
  'Maria Silva',
  '<script>alert(1)</script>',
  '=HYPERLINK("http://evil.example","click")',
  "Robert'); DROP TABLE registrations;--",
  '+SUM(1+1)*cmd|x',
  '-2+3+cmd|x',
  '@SUM(1+1)',
  'Ana, "quoted"\nnext line',
  'Zoë Ünïcødé 😀',
  '\u202eevil name'
]

/** The contract's status is what the module tests check; here any success will do, as long as it is one. */
async function expectStatus(res: Promise<{ status: number; text: string }>, status: number, what: string) {
  const answer = await res
  if (answer.status < 200 || answer.status > 299)
    throw new Error(`setup: ${what}: expected ${status}, got ${answer.status} ${answer.text.slice(0, 300)}`)
  return answer
}

async function account(base: string, names: { firstName: string; lastName: string }): Promise<Account> {
  const user = await signUp(base, password, names)
  return { email: user.email, password, userId: user.userId, token: user.token }
}

async function login(base: string, email: string, secret = password): Promise<string> {
  const res = await expectStatus(
    request(base, 'POST', '/api/sessions', { json: { email, password: secret } }),
    201,
    'log in'
  )
  return (JSON.parse(res.text) as { token: string }).token
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

async function createSheet(
  base: string,
  token: string,
  courseUnit: number,
  summary: string,
  open: boolean
): Promise<string> {
  const res = await expectStatus(
    request(base, 'POST', '/api/attendance/sheet/new', { json: { courseUnit, summary }, headers: bearer(token) }),
    201,
    'create a sheet'
  )
  const id = (JSON.parse(res.text) as { attendanceId: string }).attendanceId
  if (!open)
    await expectStatus(
      request(base, 'POST', `/api/attendance/sheet/${id}/status`, { json: { status: false }, headers: bearer(token) }),
      200,
      'close a sheet'
    )
  return id
}

function webFiles(): { files: string[]; html: Set<string> } {
  const root = path.join(projectRoot, 'dist/web')
  const files = readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((file) => !/\.(br|gz)$/.test(file) && file.includes('.'))
    .map((file) => `/${file.split(path.sep).join('/')}`)
    .sort()
  const docs = [
    '/documentation',
    '/documentation/',
    '/documentation/static/index.html',
    '/documentation/static/oauth2-redirect.html'
  ]
  const html = new Set([...files.filter((file) => file.endsWith('.html')), '/', ...docs])
  return { files: ['/', ...files], html }
}

/** Runs the valid phase over both servers and answers what the cases need. */
export async function setUp(bases: [string, string], sql: Sql): Promise<Context> {
  const [a, b] = bases
  const teacher = await account(a, { firstName: 'Ana', lastName: 'Teacher' })
  const other = await account(b, { firstName: 'Bruno', lastName: 'Other' })
  const passwordUser = await account(a, { firstName: 'Paula', lastName: 'Password' })

  // Dead sessions, each dead in its own way.
  const revoked = await account(b, { firstName: 'Carla', lastName: 'Revoked' })
  const revokedByPasswordChange = await login(a, revoked.email)
  await expectStatus(
    request(b, 'PUT', '/api/users/me/password', {
      json: { currentPassword: password, newPassword: 'another horse battery' },
      headers: bearer(revoked.token)
    }),
    204,
    'change a password'
  )
  const loggedOut = await login(b, teacher.email)
  await expectStatus(request(a, 'DELETE', '/api/sessions', { headers: bearer(loggedOut) }), 204, 'log out')
  const expired = await login(a, teacher.email)
  const idle = await login(b, teacher.email)
  await sql`update sessions set expires_at = now() - interval '1 minute' where token_hash = ${hashToken(expired)}`
  await sql`update sessions set last_used_at = now() - interval '1 day' where token_hash = ${hashToken(idle)}`

  const sheets = {
    open: await createSheet(a, teacher.token, 0, 'tp1', true),
    closed: await createSheet(b, teacher.token, 1, 'tp2', true),
    otherOpen: await createSheet(a, other.token, 2, 'p3', true),
    otherClosed: await createSheet(b, other.token, 3, 't2', false)
  }
  const signedIn: number[] = []
  for (const [i, name] of studentNames.entries()) {
    const nmec = 10_001 + i
    const base = bases[i % 2]
    const headers = i === 0 ? bearer(teacher.token) : {} // one added by the teacher, the rest by themselves
    await expectStatus(
      request(base, 'POST', `/api/attendance/sheet/${sheets.open}/student/registration`, {
        json: { nmec, name },
        headers
      }),
      201,
      `sign in ${JSON.stringify(name)}`
    )
    signedIn.push(nmec)
  }
  for (const sheet of [sheets.closed, sheets.otherOpen]) {
    await expectStatus(
      request(b, 'POST', `/api/attendance/sheet/${sheet}/student/registration`, {
        json: { nmec: 20_001, name: 'Joao Costa' }
      }),
      201,
      'sign in'
    )
  }
  await expectStatus(
    request(a, 'POST', `/api/attendance/sheet/${sheets.closed}/status`, {
      json: { status: false },
      headers: bearer(teacher.token)
    }),
    200,
    'close a sheet'
  )

  for (const id of [1, 2, 3, 4, 5]) {
    await expectStatus(
      request(bases[id % 2], 'POST', `/clientes/${id}/transacoes`, {
        json: { valor: 1000, tipo: 'c', descricao: 'setup' }
      }),
      200,
      'credit'
    )
    await expectStatus(
      request(bases[(id + 1) % 2], 'POST', `/clientes/${id}/transacoes`, {
        json: { valor: 10 * id, tipo: 'd', descricao: 'setup d' }
      }),
      200,
      'debit'
    )
  }

  const keys = [
    'fuzz-a',
    'fuzz-b',
    "'; DROP TABLE increments;--",
    '<script>alert(1)</script>',
    '../../etc/passwd',
    'Zoë 😀'
  ]
  for (const [i, key] of keys.entries()) {
    await expectStatus(
      request(bases[i % 2], 'POST', '/increment', { json: { key, value: i + 1 }, headers: bearer(teacher.token) }),
      200,
      'increment'
    )
  }
  for (const base of bases) await expectStatus(request(base, 'GET', '/counter'), 200, 'counter')

  const web = webFiles()
  return {
    teacher,
    other,
    passwordUser,
    deadTokens: { expired, idle, loggedOut, revokedByPasswordChange },
    sheets,
    signedIn,
    incrementKeys: keys.map((key) => encodeURIComponent(key)),
    webFiles: web.files,
    htmlFiles: web.html
  }
}
