import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { signUp } from '../../../test/helpers/accounts.js'
import { createDatabase, type TestDatabase } from '../../../test/helpers/database.js'
import { request } from '../../../test/helpers/http.js'
import { inWaves } from '../../../test/helpers/load.js'
import { startApp } from '../../../test/helpers/servers.js'
import { until } from '../../../test/helpers/wait.js'
import { createSql, type Sql } from '../../db/pool.js'

// Abuse limits of the attendance module: slow CSV consumers, event streams, unknown-sheet lookups.
// Replicas run in this process (startApp), each with a pool of its own like a served replica.

let db: TestDatabase
const started: Array<{ app: FastifyInstance; sql: Sql }> = []

before(async () => {
  db = await createDatabase({ migrated: true })
})

after(async () => {
  await Promise.all(started.map(({ app }) => app.close()))
  await Promise.all(started.map(({ sql }) => sql.end({ timeout: 5 })))
  await db.drop()
})

/**
 * A replica: the real app on a pool of its own with the statement deadline of a served one. Its
 * clients run in this process too, so their work would read as the server's event-loop delay: no
 * shedding on that.
 */
async function replica(env: Record<string, string> = {}): Promise<string> {
  const sql = createSql(db.url, { max: 10, statementTimeoutMs: 5000 })
  const { app, url } = await startApp(sql, { OVERLOAD_EVENT_LOOP_DELAY_MS: '0', ...env })
  started.push({ app, sql })
  return url
}

type Teacher = Awaited<ReturnType<typeof signUp>>

const teacher = (base: string) => signUp(base, 'correct horse battery', { firstName: 'Ana', lastName: 'Sousa' })

async function openSheet(base: string, user: Teacher): Promise<string> {
  const res = await request(base, 'POST', '/api/attendance/sheet/new', {
    json: { courseUnit: 0, summary: 'tp1' },
    headers: user.bearer
  })
  assert.equal(res.status, 201, res.text)
  return res.body.attendanceId
}

async function login(base: string, user: Teacher) {
  const res = await request(base, 'POST', '/api/sessions', { json: { email: user.email, password: user.password } })
  assert.equal(res.status, 201, res.text)
  return { authorization: `Bearer ${res.body.token}` }
}

function assertRetryAfter(res: { status: number; headers: Headers; text: string }) {
  assert.equal(res.status, 429, res.text)
  const retryAfter = Number(res.headers.get('retry-after'))
  assert.ok(
    Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60,
    `Retry-After ${res.headers.get('retry-after')}`
  )
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const timeout = new AbortController()
  try {
    return await Promise.race([
      promise,
      sleep(ms, undefined, { signal: timeout.signal }).then(() => {
        throw new Error(`${what}: not within ${ms} ms`)
      })
    ])
  } finally {
    timeout.abort()
  }
}

/**
 * A GET whose client takes the head and the first bytes, then reads nothing more: the TCP window
 * closes and the server's writes back up, like a client that opened a download and went away.
 */
interface StalledResponse {
  status: number
  socket: Socket
  /** Reads on to the end (the server closing the connection), then the body without its chunk framing. */
  readToEnd(timeoutMs?: number): Promise<{ body: string; complete: boolean }>
}

async function stalledGet(base: string, path: string, headers: Record<string, string>): Promise<StalledResponse> {
  const { hostname, port } = new URL(base)
  const socket = connect(Number(port), hostname)
  const head = [
    `GET ${path} HTTP/1.1`,
    `host: ${hostname}:${port}`,
    'connection: close',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)
  ]
  socket.write(`${head.join('\r\n')}\r\n\r\n`)
  // The server may close before the client reads on (it cut the response): heard from the start.
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  const first = await within(
    new Promise<Buffer>((resolve, reject) => {
      socket.once('data', resolve)
      socket.once('error', reject)
    }),
    10_000,
    'the first bytes of the response'
  )
  socket.pause()
  socket.on('error', () => {})
  const chunks = [first]
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(first.toString('latin1'))?.[1]),
    socket,
    async readToEnd(timeoutMs = 30_000) {
      socket.on('data', (chunk: Buffer) => chunks.push(chunk))
      socket.resume()
      await within(closed, timeoutMs, 'the end of the response')
      return unchunk(Buffer.concat(chunks))
    }
  }
}

/** The body of a chunked HTTP/1.1 response; `complete` only if the last (empty) chunk came. */
function unchunk(raw: Buffer): { body: string; complete: boolean } {
  let at = raw.indexOf('\r\n\r\n') + 4
  const parts: Buffer[] = []
  for (;;) {
    const lineEnd = raw.indexOf('\r\n', at)
    if (lineEnd < 0) return { body: Buffer.concat(parts).toString('utf8'), complete: false }
    const size = parseInt(raw.subarray(at, lineEnd).toString('latin1'), 16)
    if (size === 0) return { body: Buffer.concat(parts).toString('utf8'), complete: true }
    if (lineEnd + 2 + size > raw.length) return { body: Buffer.concat(parts).toString('utf8'), complete: false }
    parts.push(raw.subarray(lineEnd + 2, lineEnd + 2 + size))
    at = lineEnd + 2 + size + 2
  }
}

/** Equal texts, or the first line that differs (a whole listing would drown the message). */
function assertSameLines(actual: string, expected: string) {
  if (actual === expected) return
  const [got, want] = [actual.split('\r\n'), expected.split('\r\n')]
  const at = want.findIndex((line, i) => got[i] !== line)
  assert.fail(
    `line ${at} of ${want.length}: got ${JSON.stringify(got.slice(at - 1, at + 2))}, expected ${JSON.stringify(want.slice(at - 1, at + 2))}; ${got.length} lines`
  )
}

/** A request that must be answered within `ms` (the deadline is the contract under test). */
async function answeredWithin(
  ms: number,
  base: string,
  method: string,
  path: string,
  init: { json?: unknown; headers?: Record<string, string> } = {}
) {
  const res = await fetch(new URL(path, base), {
    method,
    headers: { ...init.headers, ...(init.json !== undefined && { 'content-type': 'application/json' }) },
    body: init.json === undefined ? undefined : JSON.stringify(init.json),
    signal: AbortSignal.timeout(ms)
  })
  await res.arrayBuffer()
  return res.status
}

/** The app's connections to PostgreSQL that are doing something (running, or inside a transaction). */
async function busyConnections(): Promise<number> {
  const [{ count }] = await db.sql<{ count: number }[]>`
    select count(*)::int from pg_stat_activity
     where datname = current_database() and pid <> pg_backend_pid() and state <> 'idle' and backend_type = 'client backend'`
  return count
}

async function gauge(base: string, name: string): Promise<number> {
  const res = await request(base, 'GET', '/metrics')
  const value = new RegExp(`^${name} (\\d+)$`, 'm').exec(res.text)?.[1]
  assert.ok(value !== undefined, `${name} in the metrics`)
  return Number(value)
}

const csvPath = (sheet: string) => `/api/attendance/sheet/${sheet}/students.csv`
const eventsPath = (sheet: string) => `/api/attendance/sheet/${sheet}/events`
const bigSheetRows = 200_000
const bigSheetStart = Date.parse('2026-01-05T08:00:00.000Z')

/** The CSV the big sheet must produce, byte for byte: student n signed in n ms after the start. */
function bigSheetCsv(): string {
  const lines = ['Timestamp,Student number,Name\r\n']
  for (let n = 1; n <= bigSheetRows; n++)
    lines.push(`${new Date(bigSheetStart + n).toISOString()},${n},Student ${n}\r\n`)
  return lines.join('')
}

describe('CSV export', () => {
  let base: string
  let owner: Teacher
  let bigSheet: string

  before(async () => {
    base = await replica({ CSV_EXPORTS_PER_USER: '50', CSV_EXPORTS_PER_PROCESS: '50' })
    owner = await teacher(base)
    bigSheet = await openSheet(base, owner)
    await db.sql`
      insert into registrations (sheet_id, nmec, name, registered_at)
      select s.id, n, 'Student ' || n, ${new Date(bigSheetStart)}::timestamptz + make_interval(secs => n / 1000.0)
        from attendance_sheets s, generate_series(1, ${bigSheetRows}) n
       where s.public_id = ${bigSheet}`
  })

  test('the bytes are those of one ordered listing: ties on the sign-in time and sub-millisecond times across pages, quoting, formulas as text', async () => {
    const sheet = await openSheet(base, owner)
    const specials: Record<number, [string, string]> = {
      0: ['=HYPERLINK("x")', '"\'=HYPERLINK(""x"")"'],
      999: ['Silva, Maria', '"Silva, Maria"'],
      1000: ['+351 Maria', "'+351 Maria"],
      1001: ['Maria "Mia" Silva', '"Maria ""Mia"" Silva"'],
      2001: ['@Maria Silva', "'@Maria Silva"]
    }
    // Student i signs in (i div 3) * 700 µs after the start: three share each time, many share a
    // millisecond, and within a time the student number (5000 - i) decides the order.
    const rows = Array.from({ length: 2500 }, (_, i) => ({
      nmec: 5000 - i,
      name: specials[i]?.[0] ?? `Student ${i}`,
      field: specials[i]?.[1] ?? `Student ${i}`,
      micros: Math.floor(i / 3) * 700
    }))
    await db.sql`
      insert into registrations (sheet_id, nmec, name, registered_at)
      select s.id, r.nmec, r.name, ${new Date(bigSheetStart)}::timestamptz + make_interval(secs => r.micros / 1000000.0)
        from attendance_sheets s,
             unnest(${rows.map((row) => row.nmec)}::int[], ${rows.map((row) => row.name)}::text[], ${rows.map((row) => row.micros)}::int[]) as r (nmec, name, micros)
       where s.public_id = ${sheet}`
    const expected =
      'Timestamp,Student number,Name\r\n' +
      rows
        .toSorted((x, y) => x.micros - y.micros || x.nmec - y.nmec)
        .map(
          (row) =>
            `${new Date(bigSheetStart + Math.floor(row.micros / 1000)).toISOString()},${row.nmec},${row.field}\r\n`
        )
        .join('')

    const res = await request(base, 'GET', csvPath(sheet), { headers: owner.bearer })

    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'text/csv; charset=utf-8')
    assert.equal(res.headers.get('content-disposition'), `attachment; filename="attendance-${sheet}.csv"`)
    assertSameLines(res.text, expected)
  })

  test('twelve clients that never read a 200,000-row export hold no database connection; other routes answer within 2 s; a download read later is whole', async () => {
    const student = await openSheet(base, owner)
    const stalled = await Promise.all(
      Array.from({ length: 12 }, () => stalledGet(base, csvPath(bigSheet), owner.bearer))
    )
    try {
      assert.deepEqual(
        stalled.map((download) => download.status),
        Array(12).fill(200)
      )

      await until(
        async () => (await busyConnections()) === 0,
        'no connection to be busy while the downloads wait on their clients',
        10_000
      )
      assert.equal(await answeredWithin(2000, base, 'GET', '/api/department/all'), 200)
      assert.equal(await answeredWithin(2000, base, 'GET', `/api/attendance/sheet/${student}`), 200)
      assert.equal(
        await answeredWithin(2000, base, 'GET', `/api/attendance/sheet/${student}/students`, { headers: owner.bearer }),
        200
      )
      assert.equal(
        await answeredWithin(2000, base, 'POST', `/api/attendance/sheet/${student}/student/registration`, {
          json: { nmec: 1, name: 'Maria Silva' }
        }),
        201
      )

      const { body, complete } = await stalled[0].readToEnd()
      assert.ok(complete, 'the download ended with its last chunk')
      assertSameLines(body, bigSheetCsv())
    } finally {
      for (const download of stalled) download.socket.destroy()
    }
    await until(
      async () => (await gauge(base, 'tandem_attendance_csv_exports')) === 0,
      'the abandoned downloads to be let go',
      10_000
    )
  })

  test('past CSV_EXPORTS_PER_USER downloads at once: 429 with Retry-After; another user still downloads; one again once one ends', async () => {
    const limited = await replica({ CSV_EXPORTS_PER_USER: '2', CSV_EXPORTS_PER_PROCESS: '10' })
    const other = await teacher(limited)
    const otherSheet = await openSheet(limited, other)
    const held = await Promise.all([1, 2].map(() => stalledGet(limited, csvPath(bigSheet), owner.bearer)))
    try {
      assert.deepEqual(
        held.map((download) => download.status),
        [200, 200]
      )

      assertRetryAfter(await request(limited, 'GET', csvPath(bigSheet), { headers: owner.bearer }))
      assert.equal((await request(limited, 'GET', csvPath(otherSheet), { headers: other.bearer })).status, 200)

      held[0].socket.destroy()
      await until(
        async () => (await request(limited, 'GET', csvPath(otherSheet), { headers: owner.bearer })).status === 403,
        'the ended download to free its slot (403: the owner passes the cap, then is not the creator)',
        5000
      )
    } finally {
      for (const download of held) download.socket.destroy()
    }
  })

  test('past CSV_EXPORTS_PER_PROCESS downloads at once: 429 with Retry-After for every user, also for a small sheet', async () => {
    const limited = await replica({ CSV_EXPORTS_PER_USER: '5', CSV_EXPORTS_PER_PROCESS: '2' })
    const other = await teacher(limited)
    const small = await openSheet(limited, other)
    const held = await Promise.all([1, 2].map(() => stalledGet(limited, csvPath(bigSheet), owner.bearer)))
    try {
      assertRetryAfter(await request(limited, 'GET', csvPath(small), { headers: other.bearer }))
    } finally {
      for (const download of held) download.socket.destroy()
    }
    await until(
      async () => (await request(limited, 'GET', csvPath(small), { headers: other.bearer })).status === 200,
      'the slots to free',
      5000
    )
  })

  test('a download whose client reads nothing for CSV_SEND_TIMEOUT_MS is cut, and its slot freed', async () => {
    const limited = await replica({ CSV_EXPORTS_PER_USER: '1', CSV_SEND_TIMEOUT_MS: '1000' })
    const stalled = await stalledGet(limited, csvPath(bigSheet), owner.bearer)
    try {
      assert.equal(stalled.status, 200)
      assertRetryAfter(await request(limited, 'GET', csvPath(bigSheet), { headers: owner.bearer }))

      await until(
        async () => (await gauge(limited, 'tandem_attendance_csv_exports')) === 0,
        'the stalled download to be cut',
        10_000
      )
      const { complete } = await stalled.readToEnd()
      assert.equal(complete, false, 'the cut download lacks its last chunk')
      const again = await stalledGet(limited, csvPath(bigSheet), owner.bearer)
      again.socket.destroy()
      assert.equal(again.status, 200)
    } finally {
      stalled.socket.destroy()
    }
  })
})

/** An event stream read as it comes; `ended` settles when the server ends it. */
async function openStream(base: string, sheet: string, headers: Record<string, string>) {
  const aborter = new AbortController()
  const res = await fetch(new URL(eventsPath(sheet), base), { headers, signal: aborter.signal })
  let text = ''
  const ended = (async () => {
    const decoder = new TextDecoder()
    try {
      for await (const chunk of res.body!) text += decoder.decode(chunk, { stream: true })
    } catch {
      // cut (or closed by the test): ended all the same
    }
  })()
  const stream = {
    status: res.status,
    headers: res.headers,
    ended,
    text: () => text,
    close: () => aborter.abort(),
    isOpen: async () => !(await Promise.race([ended.then(() => true), sleep(0).then(() => false)]))
  }
  if (res.status === 200) await until(() => text.includes(': connected'), 'the stream to say it is connected', 5000)
  return stream
}

type Stream = Awaited<ReturnType<typeof openStream>>

describe('event streams', () => {
  let r1: string
  let r2: string
  const open: Stream[] = []
  const stream = async (...args: Parameters<typeof openStream>) => {
    const opened = await openStream(...args)
    open.push(opened)
    return opened
  }

  before(async () => {
    ;[r1, r2] = await Promise.all([replica(), replica()])
  })
  after(() => {
    for (const opened of open) opened.close()
  })

  test('past EVENT_STREAMS_PER_USER and EVENT_STREAMS_PER_PROCESS: 429 with Retry-After; a stream again once some close', async () => {
    const limited = await replica({ EVENT_STREAMS_PER_USER: '3', EVENT_STREAMS_PER_PROCESS: '5' })
    const ana = await teacher(limited)
    const bruno = await teacher(limited)
    const [anaSheet, brunoSheet] = [await openSheet(limited, ana), await openSheet(limited, bruno)]

    const anas = await Promise.all(Array.from({ length: 12 }, () => stream(limited, anaSheet, ana.bearer)))
    const accepted = anas.filter((opened) => opened.status === 200)
    assert.equal(accepted.length, 3, anas.map((opened) => opened.status).join())
    for (const refused of anas.filter((opened) => opened.status !== 200)) {
      assertRetryAfter({ status: refused.status, headers: refused.headers, text: refused.text() })
    }
    const brunos = [await stream(limited, brunoSheet, bruno.bearer), await stream(limited, brunoSheet, bruno.bearer)]
    assert.deepEqual(
      brunos.map((opened) => opened.status),
      [200, 200]
    )
    const beyondProcess = await stream(limited, brunoSheet, bruno.bearer)
    assert.equal(beyondProcess.status, 429, 'the process holds 5 streams: Bruno is refused with only 2 of his own')

    accepted[0].close()
    brunos[0].close()
    await until(
      async () => (await stream(limited, anaSheet, ana.bearer)).status === 200,
      'a stream for Ana again',
      5000
    )
    assert.equal((await stream(limited, brunoSheet, bruno.bearer)).status, 200)
  })

  test('a logout through replica 1 ends the stream of that session held by replica 2, and only that one', async () => {
    const ana = await teacher(r1)
    const otherDevice = await login(r1, ana)
    const sheet = await openSheet(r1, ana)
    const loggedOut = await stream(r2, sheet, ana.bearer)
    const kept = await stream(r2, sheet, otherDevice)

    assert.equal((await request(r1, 'DELETE', '/api/sessions', { headers: ana.bearer })).status, 204)

    await within(loggedOut.ended, 3000, 'the logged-out stream to end (well before the periodic sweep)')
    assert.ok(await kept.isOpen(), 'the other session’s stream stays')
    assert.equal(
      (
        await request(r1, 'POST', `/api/attendance/sheet/${sheet}/student/registration`, {
          json: { nmec: 7, name: 'Maria Silva' }
        })
      ).status,
      201
    )
    await until(() => kept.text().includes('"reason":"registered"'), 'the kept stream to hear the sign-in', 5000)
    assert.equal((await request(r2, 'GET', eventsPath(sheet), { headers: ana.bearer })).status, 401)
  })

  test("a password change ends the streams of the user's other sessions on every replica", async () => {
    const ana = await teacher(r1)
    const otherDevice = await login(r1, ana)
    const sheet = await openSheet(r1, ana)
    const onR1 = await stream(r1, sheet, otherDevice)
    const onR2 = await stream(r2, sheet, otherDevice)

    const changed = await request(r2, 'PUT', '/api/users/me/password', {
      json: { currentPassword: ana.password, newPassword: 'another horse battery' },
      headers: ana.bearer
    })

    assert.ok(changed.status === 200 || changed.status === 204, `${changed.status} ${changed.text}`)
    await within(Promise.all([onR1.ended, onR2.ended]), 3000, 'the other session’s streams to end')
    const token = otherDevice.authorization.slice('Bearer '.length)
    assert.deepEqual(
      [...(await db.sql`select 1 from sessions where token_hash = sha256(convert_to(${token}, 'UTF8'))`)],
      []
    )
  })

  test('a stream ends when its session expires', async () => {
    const shortLived = await replica({ SESSION_TTL_MS: '3000' })
    const ana = await teacher(shortLived)
    const sheet = await openSheet(shortLived, ana)
    const expiring = await stream(shortLived, sheet, ana.bearer)

    await within(expiring.ended, 8000, 'the stream to end after its session expired')

    const [session] =
      await db.sql`select expires_at <= now() as expired from sessions where token_hash = sha256(convert_to(${ana.token}, 'UTF8'))`
    assert.equal(session.expired, true)
    assert.equal((await request(shortLived, 'GET', eventsPath(sheet), { headers: ana.bearer })).status, 401)
  })

  test('a stream whose client falls behind by more than EVENT_STREAM_BUFFER_BYTES is closed', async () => {
    const small = await replica({ EVENT_STREAM_BUFFER_BYTES: '1024' })
    const ana = await teacher(small)
    const sheet = await openSheet(small, ana)
    const slow = await stalledGet(small, eventsPath(sheet), ana.bearer)
    assert.equal(slow.status, 200)
    try {
      // About 320 KB of events at once: far past the stream's buffer, though the socket would take them.
      const changes = 5000
      await db.sql`
        select pg_notify('attendance', json_build_object('sheet', ${sheet}::text, 'reason', 'registered', 'n', n)::text)
          from generate_series(1, ${changes}) n`

      await until(
        async () => (await gauge(small, 'tandem_attendance_event_streams')) === 0,
        'the slow stream to be closed',
        15_000
      )
      const { body } = await slow.readToEnd()
      const heard = body.split('event: change').length - 1
      assert.ok(heard < changes, `the slow client got ${heard} of ${changes} changes before the cut`)
    } finally {
      slow.socket.destroy()
    }
  })
})

describe('unknown-sheet lookups and sign-ins per address', () => {
  // Five misses a minute (one per 12 s): a test is over long before one comes back.
  let r1: string
  let r2: string
  let ana: Teacher
  let sheet: string
  let nextAddress = 1
  const address = () => ({ 'x-forwarded-for': `10.9.0.${nextAddress++}` })
  const env = { SHEET_MISS_LIMIT_PER_MINUTE: '5', TRUST_PROXY: '127.0.0.1' }
  const lookup = (base: string, id: string, from: Record<string, string>) =>
    request(base, 'GET', `/api/attendance/sheet/${id}`, { headers: from })
  const signIn = (base: string, id: string, from: Record<string, string>, nmec = 12345) =>
    request(base, 'POST', `/api/attendance/sheet/${id}/student/registration`, {
      json: { nmec, name: 'Maria Silva' },
      headers: from
    })
  const registrations = async (id: string) =>
    (
      await db.sql`
    select r.nmec from registrations r join attendance_sheets s on s.id = r.sheet_id where s.public_id = ${id} order by r.nmec`
    ).map((row) => row.nmec)

  before(async () => {
    ;[r1, r2] = await Promise.all([replica(env), replica(env)])
    ana = await teacher(r1)
    sheet = await openSheet(r1, ana)
  })

  test('misses over both replicas, malformed ids included, spend the budget; then existing sheets get 429 too, and nothing is written', async () => {
    const from = address()
    const misses = [
      await lookup(r1, 'zzzzzz', from),
      await lookup(r2, 'abc', from),
      await signIn(r1, 'zzzzzy', from),
      await signIn(r2, 'ABCDE0', from),
      await lookup(r2, '%20ABCDE', from)
    ]
    assert.deepEqual(
      misses.map((res) => res.status),
      [404, 404, 404, 404, 404]
    )

    assertRetryAfter(await lookup(r1, sheet, from))
    assertRetryAfter(await signIn(r2, sheet, from, 777))
    assertRetryAfter(await lookup(r2, 'zzzzzz', from))
    assertRetryAfter(await signIn(r1, 'abc', from))
    assert.deepEqual(await registrations(sheet), [])
    assert.equal((await lookup(r1, sheet, address())).status, 200, 'another address has a budget of its own')
  })

  test('hits cost nothing: lookups and sign-ins of an existing sheet pass, and the misses still have their budget', async () => {
    const from = address()
    const hits = await inWaves(30, 5, (i) =>
      i % 3 === 0 ? signIn([r1, r2][i % 2], sheet, from, 1000 + i) : lookup([r1, r2][i % 2], sheet, from)
    )
    assert.deepEqual([...new Set(hits.map((res) => res.status))].sort(), [200, 201])

    const misses = await inWaves(5, 1, (i) => lookup([r1, r2][i % 2], 'zzzzzz', from))
    assert.deepEqual(
      misses.map((res) => res.status),
      [404, 404, 404, 404, 404]
    )
    assertRetryAfter(await lookup(r1, sheet, from))
  })

  test('parallel misses over both replicas get exactly the budget; the rest 429', async () => {
    const from = address()

    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        i % 2 === 0 ? lookup([r1, r2][(i % 4) >> 1], 'zzzzzz', from) : signIn([r1, r2][(i % 4) >> 1], 'zzzzzx', from)
      )
    )

    const statuses = results.map((res) => res.status)
    assert.equal(statuses.filter((status) => status === 404).length, 5, statuses.join())
    assert.equal(statuses.filter((status) => status === 429).length, 25, statuses.join())
  })

  test('the budget comes back: after Retry-After the address is served again', async () => {
    const fast = await replica({ SHEET_MISS_LIMIT_PER_MINUTE: '60', TRUST_PROXY: '127.0.0.1' })
    const from = address()
    let refused: Awaited<ReturnType<typeof lookup>> | undefined
    for (let i = 0; i < 200 && !refused; i++) {
      const res = await lookup(fast, 'zzzzzz', from)
      if (res.status === 429) refused = res
      else assert.equal(res.status, 404)
    }
    assert.ok(refused, 'the misses ran out')
    assertRetryAfter(refused)
    assertRetryAfter(await lookup(fast, sheet, from))

    await sleep(Number(refused.headers.get('retry-after')) * 1000)

    assert.equal((await lookup(fast, sheet, from)).status, 200)
  })

  test('a HEAD of a lookup is no route and books nothing', async () => {
    const from = address()
    for (let i = 0; i < 6; i++)
      assert.equal((await request(r1, 'HEAD', '/api/attendance/sheet/zzzzzz', { headers: from })).status, 404)

    const misses = await inWaves(5, 1, () => lookup(r2, 'zzzzzz', from))
    assert.deepEqual(
      misses.map((res) => res.status),
      [404, 404, 404, 404, 404]
    )
    assertRetryAfter(await lookup(r2, sheet, from))
  })
})
