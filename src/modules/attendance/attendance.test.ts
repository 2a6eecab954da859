import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { after, before, describe, test } from 'node:test'
import { signUp } from '../../../test/helpers/accounts.js'
import { createDatabase, type TestDatabase } from '../../../test/helpers/database.js'
import { request } from '../../../test/helpers/http.js'
import { inWaves } from '../../../test/helpers/load.js'
import { spawnServer, startReplica, type AppReplica, type ServerProcess } from '../../../test/helpers/servers.js'

// Two replicas in this process on one database; only the SIGTERM case, about the process, spawns dist/.
type Replica = AppReplica | ServerProcess
let db: TestDatabase
let a: Replica
let b: Replica

before(async () => {
  db = await createDatabase()
  ;[a, b] = await Promise.all([1, 2].map(() => startReplica({ DATABASE_URL: db.url })))
})

after(async () => {
  await Promise.all([a.stop(), b.stop()])
  await db.drop()
})

type Teacher = Awaited<ReturnType<typeof signUp>>

const alphabet = '23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
const publicId = new RegExp(`^[${alphabet}]{6}$`)
const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

const teacher = (server = a, names = { firstName: 'Ana', lastName: 'Sousa' }) =>
  signUp(server.url, 'correct horse battery', names)

async function openSheet(
  user: Teacher,
  body: Record<string, unknown> = { courseUnit: 0, summary: 'tp1' },
  server = a
): Promise<string> {
  const res = await request(server.url, 'POST', '/api/attendance/sheet/new', { json: body, headers: user.bearer })
  assert.equal(res.status, 201, res.text)
  return res.body.attendanceId
}

const signIn = (sheet: string, body: unknown, { server = a, headers = {} as Record<string, string> } = {}) =>
  request(server.url, 'POST', `/api/attendance/sheet/${sheet}/student/registration`, { json: body, headers })

const setStatus = (user: Teacher, sheet: string, status: unknown, server = a) =>
  request(server.url, 'POST', `/api/attendance/sheet/${sheet}/status`, { json: { status }, headers: user.bearer })

/** A sheet id that is well formed but unused (a fresh random one is used with odds of 1 in 57^6). */
function unusedId(): string {
  return Array.from({ length: 6 }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join('')
}

async function storedRegistrations(sheet: string) {
  return [
    ...(await db.sql<{ nmec: number; name: string; addedBy: number | null }[]>`
    select r.nmec, r.name, r.added_by as "addedBy"
      from registrations r join attendance_sheets s on s.id = r.sheet_id
     where s.public_id = ${sheet}
     order by r.registered_at, r.nmec`)
  ]
}

async function storedSheet(sheet: string) {
  const [row] = await db.sql`
    select creator_id as "creatorId", course_unit_id as "courseUnit", summary, is_active as "isActive"
      from attendance_sheets where public_id = ${sheet}`
  return row
}

describe('reference data', () => {
  test('the seed: department 4 DETI with PI, MAS, ITW and TPW', async () => {
    const departments = await request(a.url, 'GET', '/api/department/all')
    const units = await request(a.url, 'GET', '/api/department/4/course_units')

    assert.equal(departments.status, 200)
    assert.deepEqual(departments.body, [{ id: 4, name: 'DETI', initials: 'DETI' }])
    assert.equal(units.status, 200)
    assert.deepEqual(units.body, [
      { id: 0, name: 'PI', department: 4 },
      { id: 1, name: 'MAS', department: 4 },
      { id: 2, name: 'ITW', department: 4 },
      { id: 3, name: 'TPW', department: 4 }
    ])
  })

  test('the seed run again changes nothing', async () => {
    const before = [...(await db.sql`select * from course_units order by id`)]
    const seed = await readFile(new URL('./migrations/006_attendance_seed.sql', import.meta.url), 'utf8')

    await db.sql.unsafe(seed)

    assert.deepEqual([...(await db.sql`select * from course_units order by id`)], before)
    assert.deepEqual(
      [...(await db.sql`select id, name, initials from departments`)],
      [{ id: 4, name: 'DETI', initials: 'DETI' }]
    )
  })

  test('all course units by name, cacheable for a day', async () => {
    const res = await request(b.url, 'GET', '/api/course_units')

    assert.equal(res.status, 200)
    assert.deepEqual(
      res.body.map((unit: { name: string }) => unit.name),
      ['ITW', 'MAS', 'PI', 'TPW']
    )
    assert.equal(res.headers.get('cache-control'), 'public, max-age=86400')
  })

  test('an unknown department: 404; an id that is not an integer: 422', async () => {
    for (const id of ['5', '-1', '99999999999']) {
      assert.equal((await request(a.url, 'GET', `/api/department/${id}/course_units`)).status, 404, id)
    }
    for (const id of ['abc', '1.5', '1e3']) {
      assert.equal((await request(a.url, 'GET', `/api/department/${id}/course_units`)).status, 422, id)
    }
  })

  test("my course units: the distinct units of the caller's sheets, by name", async () => {
    const ana = await teacher()
    const other = await teacher()
    await openSheet(ana, { courseUnit: 3 })
    await openSheet(ana, { courseUnit: 0 })
    await openSheet(ana, { courseUnit: 0 })
    await openSheet(other, { courseUnit: 1 })

    const res = await request(b.url, 'GET', '/api/course_units/my', { headers: ana.bearer })

    assert.equal(res.status, 200)
    assert.deepEqual(res.body, [
      { id: 0, name: 'PI', department: 4 },
      { id: 3, name: 'TPW', department: 4 }
    ])
    assert.equal((await request(a.url, 'GET', '/api/course_units/my')).status, 401)
  })
})

describe('POST /api/attendance/sheet/new', () => {
  test('opens a sheet under a random 6-character id, the summary trimmed and upper-cased', async () => {
    const ana = await teacher()

    const res = await request(a.url, 'POST', '/api/attendance/sheet/new', {
      json: { courseUnit: 0, summary: '  tp1 ' },
      headers: ana.bearer
    })

    assert.equal(res.status, 201)
    assert.deepEqual(Object.keys(res.body), ['attendanceId'])
    assert.match(res.body.attendanceId, publicId)
    assert.deepEqual(await storedSheet(res.body.attendanceId), {
      creatorId: ana.userId,
      courseUnit: 0,
      summary: 'TP1',
      isActive: true
    })
  })

  test('without a summary the sheet has none', async () => {
    const ana = await teacher()

    const id = await openSheet(ana, { courseUnit: 2 })

    assert.equal((await storedSheet(id)).summary, null)
  })

  const invalid: Array<[string, unknown, string[]]> = [
    ['courseUnit "abc"', { courseUnit: 'abc' }, ['courseUnit']],
    ['no courseUnit', { summary: 'TP1' }, ['courseUnit']],
    ['courseUnit 1.5', { courseUnit: 1.5 }, ['courseUnit']],
    ['a 51-character summary', { courseUnit: 0, summary: 'x'.repeat(51) }, ['summary']],
    ['a blank summary', { courseUnit: 0, summary: '   ' }, ['summary']],
    ['an empty summary', { courseUnit: 0, summary: '' }, ['summary']],
    ['a numeric summary', { courseUnit: 0, summary: 5 }, ['summary']]
  ]
  for (const [name, body, fields] of invalid) {
    test(`${name}: 422 naming the field, no sheet`, async () => {
      const ana = await teacher()

      const res = await request(a.url, 'POST', '/api/attendance/sheet/new', { json: body, headers: ana.bearer })

      assert.equal(res.status, 422, res.text)
      assert.equal(res.body.error, 'invalid-input')
      assert.deepEqual(
        res.body.details.map((detail: string) => detail.split(':')[0]),
        fields
      )
      assert.deepEqual([...(await db.sql`select 1 from attendance_sheets where creator_id = ${ana.userId}`)], [])
    })
  }

  test('a 50-character summary after trimming is accepted', async () => {
    const ana = await teacher()

    const id = await openSheet(ana, { courseUnit: 0, summary: ` ${'p'.repeat(50)} ` })

    assert.equal((await storedSheet(id)).summary, 'P'.repeat(50))
  })

  test('an unknown course unit: 404, no sheet', async () => {
    const ana = await teacher()

    const res = await request(a.url, 'POST', '/api/attendance/sheet/new', {
      json: { courseUnit: 9999 },
      headers: ana.bearer
    })

    assert.equal(res.status, 404)
    assert.equal(res.body.error, 'not-found')
    assert.deepEqual([...(await db.sql`select 1 from attendance_sheets where creator_id = ${ana.userId}`)], [])
  })

  test('no session: 401', async () => {
    const res = await request(a.url, 'POST', '/api/attendance/sheet/new', { json: { courseUnit: 0 } })

    assert.equal(res.status, 401)
    assert.equal(res.body.error, 'unauthorized')
  })

  test('50 parallel creations over both replicas: 50 distinct ids, 50 rows', async () => {
    const ana = await teacher()

    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        request([a, b][i % 2].url, 'POST', '/api/attendance/sheet/new', {
          json: { courseUnit: 1, summary: `p${i}` },
          headers: ana.bearer
        })
      )
    )

    assert.deepEqual(
      results.map((res) => res.status),
      Array(50).fill(201)
    )
    const ids = new Set(results.map((res) => res.body.attendanceId))
    assert.equal(ids.size, 50)
    const [{ count }] = await db.sql`select count(*)::int from attendance_sheets where creator_id = ${ana.userId}`
    assert.equal(count, 50)
  })
})

describe('GET /api/attendance/sheet/:id', () => {
  test("anyone sees the sheet's unit, its creator's name, summary and state", async () => {
    const ana = await teacher(a, { firstName: 'Ana', lastName: 'Sousa' })
    const id = await openSheet(ana, { courseUnit: 0, summary: 'tp1' })

    const res = await request(b.url, 'GET', `/api/attendance/sheet/${id}`)

    assert.equal(res.status, 200)
    const { timestamp, signInUrl, ...rest } = res.body
    assert.deepEqual(rest, {
      id,
      courseUnit: 0,
      courseUnitName: 'PI',
      creatorName: 'Ana Sousa',
      summary: 'TP1',
      isActive: true
    })
    assert.equal(
      signInUrl,
      `${b.url}/reg.html?id=${id}`,
      'the sign-in URL is built from the origin the request reached'
    )
    assert.match(timestamp, iso)
    assert.ok(Math.abs(Date.parse(timestamp) - Date.now()) < 60_000)
  })

  test('a creator without names is shown as ""; a sheet without summary has null', async () => {
    const nameless = await signUp(a.url)
    const id = await openSheet(nameless, { courseUnit: 3 })

    const res = await request(a.url, 'GET', `/api/attendance/sheet/${id}`)

    assert.equal(res.body.creatorName, '')
    assert.equal(res.body.summary, null)
  })

  test('with PUBLIC_URL the sign-in URL is built from it, whatever host the request named', async () => {
    const behindProxy = await startReplica({ DATABASE_URL: db.url, PUBLIC_URL: 'https://attendance.example.edu/' })
    try {
      const id = await openSheet(await teacher())

      const res = await request(behindProxy.url, 'GET', `/api/attendance/sheet/${id}`)

      assert.equal(res.body.signInUrl, `https://attendance.example.edu/reg.html?id=${id}`)
    } finally {
      await behindProxy.stop()
    }
  })

  test('ids differing only in letter case are different sheets', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    const swapped = [...id].map((c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase())).join('')
    if (swapped === id || !publicId.test(swapped)) return // only digits, or a letter with no twin in the alphabet

    assert.equal((await request(a.url, 'GET', `/api/attendance/sheet/${swapped}`)).status, 404)
  })
})

describe('GET /api/attendance/sheets/:courseId', () => {
  test("the caller's sheets of that unit, newest first", async () => {
    const ana = await teacher()
    const other = await teacher()
    const first = await openSheet(ana, { courseUnit: 2, summary: 'first' })
    await openSheet(ana, { courseUnit: 1, summary: 'other unit' })
    const second = await openSheet(ana, { courseUnit: 2 })
    await openSheet(other, { courseUnit: 2, summary: 'not mine' })
    await setStatus(ana, first, false)

    const res = await request(b.url, 'GET', '/api/attendance/sheets/2', { headers: ana.bearer })

    assert.equal(res.status, 200)
    assert.equal(res.body.courseUnit, 2)
    assert.deepEqual(
      res.body.attendances.map(({ registerTimestamp, ...sheet }: { registerTimestamp: string }) => {
        assert.match(registerTimestamp, iso)
        return sheet
      }),
      [
        { id: second, summary: null, isActive: true },
        { id: first, summary: 'FIRST', isActive: false }
      ]
    )
  })

  test('a unit without sheets of the caller: an empty list; not an integer: 422; no session: 401', async () => {
    const ana = await teacher()

    assert.deepEqual((await request(a.url, 'GET', '/api/attendance/sheets/3', { headers: ana.bearer })).body, {
      courseUnit: 3,
      attendances: []
    })
    assert.equal((await request(a.url, 'GET', '/api/attendance/sheets/abc', { headers: ana.bearer })).status, 422)
    assert.equal((await request(a.url, 'GET', '/api/attendance/sheets/3')).status, 401)
  })
})

describe('an unknown sheet id', () => {
  const ids = [unusedId(), 'abc', 'ABCDEFG', 'ABCDE0', 'ABCDEl', '%20ABCDE', 'ABCDE%20']
  for (const id of ids) {
    test(`"${id}" is 404 on every endpoint`, async () => {
      const ana = await teacher()
      const calls: Array<[string, string, unknown]> = [
        ['GET', `/api/attendance/sheet/${id}`, undefined],
        ['POST', `/api/attendance/sheet/${id}/status`, { status: false }],
        ['GET', `/api/attendance/sheet/${id}/students`, undefined],
        ['GET', `/api/attendance/sheet/${id}/students.csv`, undefined],
        ['GET', `/api/attendance/sheet/${id}/events`, undefined],
        ['POST', `/api/attendance/sheet/${id}/student/registration`, { nmec: 12345, name: 'Maria Silva' }],
        ['DELETE', `/api/attendance/sheet/${id}/student/deletion`, { nmecs: [12345] }]
      ]

      for (const [method, path, json] of calls) {
        const res = await request(b.url, method, path, { json, headers: ana.bearer })
        assert.equal(res.status, 404, `${method} ${path}: ${res.text}`)
        assert.equal(res.body.error, 'not-found')
      }
      assert.deepEqual(
        [...(await db.sql`select 1 from registrations where nmec = 12345 and added_by = ${ana.userId}`)],
        []
      )
    })
  }
})

describe('POST /api/attendance/sheet/:id/status', () => {
  test('the creator closes and reopens the sheet', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    const closed = await setStatus(ana, id, false, b)
    assert.equal(closed.status, 200)
    assert.deepEqual(closed.body, { isActive: false })
    assert.equal((await storedSheet(id)).isActive, false)

    const opened = await setStatus(ana, id, true, a)
    assert.deepEqual(opened.body, { isActive: true })
    assert.equal((await storedSheet(id)).isActive, true)
  })

  test('another teacher: 403, the sheet stays as it was', async () => {
    const ana = await teacher()
    const bruno = await teacher()
    const id = await openSheet(ana)

    const res = await setStatus(bruno, id, false)

    assert.equal(res.status, 403)
    assert.equal(res.body.error, 'forbidden')
    assert.equal((await storedSheet(id)).isActive, true)
  })

  for (const body of [{ status: 'maybe' }, { status: 1 }, { status: null }, {}]) {
    test(`${JSON.stringify(body)}: 422, the sheet stays as it was`, async () => {
      const ana = await teacher()
      const id = await openSheet(ana)

      const res = await request(a.url, 'POST', `/api/attendance/sheet/${id}/status`, {
        json: body,
        headers: ana.bearer
      })

      assert.equal(res.status, 422)
      assert.deepEqual(
        res.body.details.map((detail: string) => detail.split(':')[0]),
        ['status']
      )
      assert.equal((await storedSheet(id)).isActive, true)
    })
  }

  test('no session: 401', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    assert.equal(
      (await request(a.url, 'POST', `/api/attendance/sheet/${id}/status`, { json: { status: false } })).status,
      401
    )
  })
})

describe('POST /api/attendance/sheet/:id/student/registration', () => {
  test('a student signs in on an open sheet without an account: 201, stored as a self sign-in', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    const res = await signIn(id, { nmec: 98765, name: '  Maria Silva ' }, { server: b })

    assert.equal(res.status, 201)
    assert.deepEqual(Object.keys(res.body).sort(), ['name', 'nmec', 'timestamp'])
    assert.equal(res.body.nmec, 98765)
    assert.equal(res.body.name, 'Maria Silva')
    assert.match(res.body.timestamp, iso)
    assert.deepEqual(await storedRegistrations(id), [{ nmec: 98765, name: 'Maria Silva', addedBy: null }])
  })

  test('the same number again: 409, and the name stays the first one', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    await signIn(id, { nmec: 98765, name: 'Maria Silva' })

    const res = await signIn(id, { nmec: 98765, name: 'Someone Else' }, { server: b })

    assert.equal(res.status, 409)
    assert.equal(res.body.error, 'already-registered')
    assert.deepEqual(await storedRegistrations(id), [{ nmec: 98765, name: 'Maria Silva', addedBy: null }])
  })

  test('the same number on another sheet is another registration', async () => {
    const ana = await teacher()
    const first = await openSheet(ana)
    const second = await openSheet(ana)
    await signIn(first, { nmec: 98765, name: 'Maria Silva' })

    const res = await signIn(second, { nmec: 98765, name: 'Maria S. Silva' })

    assert.equal(res.status, 201)
    assert.deepEqual(await storedRegistrations(first), [{ nmec: 98765, name: 'Maria Silva', addedBy: null }])
    assert.deepEqual(await storedRegistrations(second), [{ nmec: 98765, name: 'Maria S. Silva', addedBy: null }])
  })

  test('a closed sheet refuses an anonymous sign-in: 403, nothing written', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    await setStatus(ana, id, false)

    const res = await signIn(id, { nmec: 98765, name: 'Maria Silva' }, { server: b })

    assert.equal(res.status, 403)
    assert.equal(res.body.error, 'forbidden')
    assert.deepEqual(await storedRegistrations(id), [])
  })

  test('its creator registers a student on the closed sheet, as Bearer or cookie: stored as added by them', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    await setStatus(ana, id, false)

    const bearer = await signIn(id, { nmec: 12345, name: 'Joao Costa' }, { headers: ana.bearer })
    const cookie = await signIn(id, { nmec: 12346, name: 'Rita Costa' }, { server: b, headers: ana.cookie })

    assert.equal(bearer.status, 201)
    assert.equal(cookie.status, 201)
    assert.deepEqual(await storedRegistrations(id), [
      { nmec: 12345, name: 'Joao Costa', addedBy: ana.userId },
      { nmec: 12346, name: 'Rita Costa', addedBy: ana.userId }
    ])
  })

  test("another teacher registering on A's closed sheet: 403, the list unchanged", async () => {
    const ana = await teacher()
    const bruno = await teacher()
    const id = await openSheet(ana)
    await signIn(id, { nmec: 98765, name: 'Maria Silva' })
    await setStatus(ana, id, false)

    const res = await signIn(id, { nmec: 12345, name: 'Joao Costa' }, { headers: bruno.bearer })

    assert.equal(res.status, 403)
    const list = await request(a.url, 'GET', `/api/attendance/sheet/${id}/students`, { headers: ana.bearer })
    assert.deepEqual(
      list.body.map((student: { nmec: number }) => student.nmec),
      [98765]
    )
    assert.deepEqual(await storedRegistrations(id), [{ nmec: 98765, name: 'Maria Silva', addedBy: null }])
  })

  test("a cross-site form carrying the creator's cookie gets no more than an anonymous student", async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    await setStatus(ana, id, false)

    const res = await signIn(
      id,
      { nmec: 12345, name: 'Joao Costa' },
      {
        headers: { ...ana.cookie, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' }
      }
    )

    assert.equal(res.status, 403)
    assert.deepEqual(await storedRegistrations(id), [])
  })

  test('another teacher on an open sheet signs in like anyone, as a self sign-in', async () => {
    const ana = await teacher()
    const bruno = await teacher()
    const id = await openSheet(ana)

    const res = await signIn(id, { nmec: 12345, name: 'Bruno Lima' }, { headers: bruno.bearer })

    assert.equal(res.status, 201)
    assert.deepEqual(await storedRegistrations(id), [{ nmec: 12345, name: 'Bruno Lima', addedBy: null }])
  })

  test('a name with markup comes back verbatim, as data', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    const name = '<script>alert(1)</script>'

    const res = await signIn(id, { nmec: 11111, name })

    assert.equal(res.status, 201)
    assert.equal(res.body.name, name)
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
    const list = await request(b.url, 'GET', `/api/attendance/sheet/${id}/students`, { headers: ana.bearer })
    assert.equal(list.body[0].name, name)
  })

  const invalid: Array<[string, unknown, string[]]> = [
    ['nmec "abc"', { nmec: 'abc', name: 'Maria Silva' }, ['nmec']],
    ['nmec "12345" as a string', { nmec: '12345', name: 'Maria Silva' }, ['nmec']],
    ['nmec -1', { nmec: -1, name: 'Maria Silva' }, ['nmec']],
    ['nmec 0', { nmec: 0, name: 'Maria Silva' }, ['nmec']],
    ['nmec 1.5', { nmec: 1.5, name: 'Maria Silva' }, ['nmec']],
    ['nmec 100000000', { nmec: 100000000, name: 'Maria Silva' }, ['nmec']],
    ['no nmec', { name: 'Maria Silva' }, ['nmec']],
    ['a 4-character name', { nmec: 12345, name: 'Ana ' }, ['name']],
    ['a name of 3 characters padded to 7', { nmec: 12345, name: '  Ana  ' }, ['name']],
    ['a 101-character name', { nmec: 12345, name: 'x'.repeat(101) }, ['name']],
    ['no name', { nmec: 12345 }, ['name']],
    ['a name with a NUL', { nmec: 12345, name: 'Maria\u0000Silva' }, ['name']],
    ['both wrong', { nmec: 'abc', name: 'abc' }, ['nmec', 'name']]
  ]
  for (const [name, body, fields] of invalid) {
    test(`${name}: 422 naming ${fields.join(' and ')}, nothing written`, async () => {
      const ana = await teacher()
      const id = await openSheet(ana)

      const res = await signIn(id, body)

      assert.equal(res.status, 422, res.text)
      assert.equal(res.body.error, 'invalid-input')
      assert.deepEqual(
        res.body.details.map((detail: string) => detail.split(':')[0]),
        fields
      )
      assert.deepEqual(await storedRegistrations(id), [])
    })
  }

  test('a 100-character name and nmec 99999999 are accepted', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    const res = await signIn(id, { nmec: 99999999, name: 'é'.repeat(100) })

    assert.equal(res.status, 201)
    assert.deepEqual(await storedRegistrations(id), [{ nmec: 99999999, name: 'é'.repeat(100), addedBy: null }])
  })

  test('malformed JSON: 400', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    const res = await request(a.url, 'POST', `/api/attendance/sheet/${id}/student/registration`, {
      body: '{"nmec": 1,',
      headers: { 'content-type': 'application/json' }
    })

    assert.equal(res.status, 400)
    assert.equal(res.body.error, 'malformed-json')
  })

  test('20 parallel distinct sign-ins over both replicas: 20 rows', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        signIn(id, { nmec: 1000 + i, name: `Student ${i}` }, { server: [a, b][i % 2] })
      )
    )

    assert.deepEqual(
      results.map((res) => res.status),
      Array(20).fill(201)
    )
    const stored = await storedRegistrations(id)
    assert.deepEqual(
      stored.map((row) => row.nmec).sort(),
      Array.from({ length: 20 }, (_, i) => 1000 + i)
    )
  })

  test('10 parallel sign-ins of one number over both replicas: one 201, nine 409, one row', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        signIn(id, { nmec: 55555, name: `Claimant ${i}` }, { server: [a, b][i % 2] })
      )
    )

    assert.deepEqual(results.map((res) => res.status).sort(), [201, ...Array(9).fill(409)])
    const winner = results.find((res) => res.status === 201)!
    assert.deepEqual(await storedRegistrations(id), [{ nmec: 55555, name: winner.body.name, addedBy: null }])
  })

  test('sign-ins racing a close: each is either stored and 201, or refused with 403', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    const [results, closed] = await Promise.all([
      Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          signIn(id, { nmec: 2000 + i, name: `Student ${i}` }, { server: [a, b][i % 2] })
        )
      ),
      setStatus(ana, id, false, b)
    ])

    assert.equal(closed.status, 200)
    const accepted = results.flatMap((res) => (res.status === 201 ? [res.body.nmec] : []))
    assert.ok(
      results.every((res) => res.status === 201 || res.status === 403),
      results.map((res) => res.status).join()
    )
    assert.deepEqual((await storedRegistrations(id)).map((row) => row.nmec).sort(), accepted.sort())
    assert.equal((await signIn(id, { nmec: 3000, name: 'Too Late' })).status, 403)
  })
})

describe('GET /api/attendance/sheet/:id/students', () => {
  test('the creator sees the students in sign-in order, with their sign-in times on this sheet', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    for (const [nmec, name] of [
      [300, 'Carla Dias'],
      [100, 'Alice Bento'],
      [200, 'Bruno Reis']
    ] as const) {
      assert.equal((await signIn(id, { nmec, name })).status, 201)
    }

    const res = await request(b.url, 'GET', `/api/attendance/sheet/${id}/students`, { headers: ana.bearer })

    assert.equal(res.status, 200)
    assert.deepEqual(
      res.body.map(({ nmec, name }: { nmec: number; name: string }) => ({ nmec, name })),
      [
        { nmec: 300, name: 'Carla Dias' },
        { nmec: 100, name: 'Alice Bento' },
        { nmec: 200, name: 'Bruno Reis' }
      ]
    )
    const times = res.body.map((student: { timestamp: string }) => student.timestamp)
    for (const time of times) assert.match(time, iso)
    assert.deepEqual(times, [...times].sort())
  })

  test('another teacher: 403; no session: 401', async () => {
    const ana = await teacher()
    const bruno = await teacher()
    const id = await openSheet(ana)
    await signIn(id, { nmec: 98765, name: 'Maria Silva' })

    const other = await request(a.url, 'GET', `/api/attendance/sheet/${id}/students`, { headers: bruno.bearer })
    const anonymous = await request(a.url, 'GET', `/api/attendance/sheet/${id}/students`)

    assert.equal(other.status, 403)
    assert.equal(other.body.error, 'forbidden')
    assert.equal(anonymous.status, 401)
  })
})

describe('DELETE /api/attendance/sheet/:id/student/deletion', () => {
  test('the creator removes students; numbers not on the sheet are ignored', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    for (const nmec of [1, 2, 3]) await signIn(id, { nmec, name: `Student ${nmec}` })

    const res = await request(b.url, 'DELETE', `/api/attendance/sheet/${id}/student/deletion`, {
      json: { nmecs: [1, 3, 4] },
      headers: ana.bearer
    })

    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { removed: 2 })
    assert.deepEqual(
      (await storedRegistrations(id)).map((row) => row.nmec),
      [2]
    )
  })

  test('a removed student may sign in again', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    await signIn(id, { nmec: 12345, name: 'Joao Costa' })
    await request(a.url, 'DELETE', `/api/attendance/sheet/${id}/student/deletion`, {
      json: { nmecs: [12345] },
      headers: ana.bearer
    })

    assert.equal((await signIn(id, { nmec: 12345, name: 'Joao Costa' })).status, 201)
  })

  test('another teacher: 403, nobody removed', async () => {
    const ana = await teacher()
    const bruno = await teacher()
    const id = await openSheet(ana)
    await signIn(id, { nmec: 98765, name: 'Maria Silva' })

    const res = await request(a.url, 'DELETE', `/api/attendance/sheet/${id}/student/deletion`, {
      json: { nmecs: [98765] },
      headers: bruno.bearer
    })

    assert.equal(res.status, 403)
    assert.deepEqual(
      (await storedRegistrations(id)).map((row) => row.nmec),
      [98765]
    )
  })

  for (const body of [{ nmecs: 'x' }, { nmecs: ['x'] }, { nmecs: [0] }, {}]) {
    test(`${JSON.stringify(body)}: 422, nobody removed`, async () => {
      const ana = await teacher()
      const id = await openSheet(ana)
      await signIn(id, { nmec: 98765, name: 'Maria Silva' })

      const res = await request(a.url, 'DELETE', `/api/attendance/sheet/${id}/student/deletion`, {
        json: body,
        headers: ana.bearer
      })

      assert.equal(res.status, 422)
      assert.equal(res.body.error, 'invalid-input')
      assert.deepEqual(
        (await storedRegistrations(id)).map((row) => row.nmec),
        [98765]
      )
    })
  }

  test('no session: 401', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    assert.equal(
      (await request(a.url, 'DELETE', `/api/attendance/sheet/${id}/student/deletion`, { json: { nmecs: [1] } })).status,
      401
    )
  })
})

describe('GET /api/attendance/sheet/:id/students.csv', () => {
  test('a CSV attachment of the list: RFC 4180 quoting, formulas kept as text', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    const names = [
      'Maria Silva',
      'Silva, Maria',
      'Maria "Mia" Silva',
      '=HYPERLINK("x")',
      '+351 Maria',
      '-Maria-',
      '@Maria Silva'
    ]
    for (const [i, name] of names.entries()) assert.equal((await signIn(id, { nmec: 100 + i, name })).status, 201)

    const res = await request(b.url, 'GET', `/api/attendance/sheet/${id}/students.csv`, { headers: ana.bearer })

    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'text/csv; charset=utf-8')
    assert.equal(res.headers.get('content-disposition'), `attachment; filename="attendance-${id}.csv"`)
    const lines = res.text.split('\r\n')
    assert.equal(lines.pop(), '', 'every record ends with CRLF')
    assert.equal(lines[0], 'Timestamp,Student number,Name')
    const times = lines.slice(1).map((line) => line.split(',')[0])
    for (const time of times) assert.match(time, iso)
    assert.deepEqual(
      lines.slice(1).map((line) => line.slice(line.indexOf(',') + 1)),
      [
        '100,Maria Silva',
        '101,"Silva, Maria"',
        '102,"Maria ""Mia"" Silva"',
        '103,"\'=HYPERLINK(""x"")"',
        "104,'+351 Maria",
        "105,'-Maria-",
        "106,'@Maria Silva"
      ]
    )
  })

  test('a long list is streamed whole, in sign-in order', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    await db.sql`
      insert into registrations (sheet_id, nmec, name, registered_at)
      select s.id, n, 'Student ' || n, now() + make_interval(secs => n)
        from attendance_sheets s, generate_series(1, 1500) n
       where s.public_id = ${id}`

    const res = await request(a.url, 'GET', `/api/attendance/sheet/${id}/students.csv`, { headers: ana.bearer })

    const lines = res.text.trimEnd().split('\r\n')
    assert.equal(lines.length, 1501)
    assert.deepEqual(
      lines.slice(1).map((line) => Number(line.split(',')[1])),
      Array.from({ length: 1500 }, (_, i) => i + 1)
    )
  })

  test('an empty sheet: only the header', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    const res = await request(a.url, 'GET', `/api/attendance/sheet/${id}/students.csv`, { headers: ana.cookie })

    assert.equal(res.text, 'Timestamp,Student number,Name\r\n')
  })

  test('another teacher: 403; no session: 401', async () => {
    const ana = await teacher()
    const bruno = await teacher()
    const id = await openSheet(ana)

    assert.equal(
      (await request(a.url, 'GET', `/api/attendance/sheet/${id}/students.csv`, { headers: bruno.bearer })).status,
      403
    )
    assert.equal((await request(a.url, 'GET', `/api/attendance/sheet/${id}/students.csv`)).status, 401)
  })
})

/** An event stream read as it arrives: `next()` waits for the next `change` event. */
async function openEvents(server: Replica, sheet: string, headers: Record<string, string>) {
  const aborter = new AbortController()
  const res = await fetch(`${server.url}/api/attendance/sheet/${sheet}/events`, { headers, signal: aborter.signal })
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader()
  let buffered = ''
  const events: Array<{ event: string; data: string }> = []
  async function next(timeoutMs = 5000): Promise<{ event: string; data: unknown }> {
    const deadline = Date.now() + timeoutMs
    while (events.length === 0) {
      const chunk = await Promise.race([
        reader.read(),
        new Promise<never>((_resolve, reject) =>
          setTimeout(() => reject(new Error('no event in time')), deadline - Date.now()).unref()
        )
      ])
      if (chunk.done) throw new Error('the stream ended')
      buffered += chunk.value
      for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
        const block = buffered.slice(0, end)
        buffered = buffered.slice(end + 2)
        const fields = Object.fromEntries(
          block
            .split('\n')
            .filter((line) => !line.startsWith(':'))
            .map((line) => {
              const colon = line.indexOf(':')
              return [line.slice(0, colon), line.slice(colon + 1).trim()]
            })
        )
        if (fields.event) events.push({ event: fields.event, data: fields.data })
      }
    }
    const { event, data } = events.shift()!
    return { event, data: JSON.parse(data) }
  }
  return { res, reader, next, close: () => aborter.abort() }
}

describe('GET /api/attendance/sheet/:id/events', () => {
  test('a page on replica 1 hears a sign-in made through replica 2, a removal and a close', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    const events = await openEvents(a, id, ana.cookie)
    try {
      assert.equal(events.res.status, 200)
      assert.equal(events.res.headers.get('content-type'), 'text/event-stream')
      assert.equal(events.res.headers.get('cache-control'), 'no-cache')

      assert.equal((await signIn(id, { nmec: 98765, name: 'Maria Silva' }, { server: b })).status, 201)
      assert.deepEqual(await events.next(), { event: 'change', data: { sheet: id, reason: 'registered' } })

      await request(b.url, 'DELETE', `/api/attendance/sheet/${id}/student/deletion`, {
        json: { nmecs: [98765] },
        headers: ana.bearer
      })
      assert.deepEqual(await events.next(), { event: 'change', data: { sheet: id, reason: 'removed' } })

      await setStatus(ana, id, false, b)
      assert.deepEqual(await events.next(), { event: 'change', data: { sheet: id, reason: 'status' } })
    } finally {
      events.close()
    }
  })

  test("a page hears only its own sheet's changes, and nothing for requests that changed nothing", async () => {
    const ana = await teacher()
    const watched = await openSheet(ana)
    const other = await openSheet(ana)
    const events = await openEvents(b, watched, ana.bearer)
    try {
      await signIn(other, { nmec: 1, name: 'Other Sheet' })
      await request(a.url, 'DELETE', `/api/attendance/sheet/${watched}/student/deletion`, {
        json: { nmecs: [1] },
        headers: ana.bearer
      })
      await setStatus(ana, watched, true) // already open
      await signIn(watched, { nmec: 2, name: 'Watched Sheet' }, { server: a })

      assert.deepEqual(await events.next(), { event: 'change', data: { sheet: watched, reason: 'registered' } })
    } finally {
      events.close()
    }
  })

  test('another teacher: 403; no session: 401', async () => {
    const ana = await teacher()
    const bruno = await teacher()
    const id = await openSheet(ana)

    assert.equal(
      (await request(a.url, 'GET', `/api/attendance/sheet/${id}/events`, { headers: bruno.bearer })).status,
      403
    )
    assert.equal((await request(a.url, 'GET', `/api/attendance/sheet/${id}/events`)).status, 401)
  })

  test('SIGTERM ends the open streams and the process exits promptly', async () => {
    const server = await spawnServer('serve', { DATABASE_URL: db.url })
    const ana = await teacher(server)
    const id = await openSheet(ana, { courseUnit: 0 }, server)
    const events = await openEvents(server, id, ana.bearer)
    const started = Date.now()

    const code = await server.stop('SIGTERM')

    assert.equal(code, 0, server.output())
    assert.ok(Date.now() - started < 8000, 'well before the 10 s drain timeout')
    await assert.rejects(events.next(1000), /the stream ended/)
  })
})

describe('sign-in rate limit', () => {
  let limited: AppReplica[]

  // limited[0] trusts X-Forwarded-For from the loopback (a proxy in front), limited[1] does not.
  before(async () => {
    limited = await Promise.all(
      ['127.0.0.1', 'false'].map((trustProxy) =>
        startReplica({ DATABASE_URL: db.url, ATTENDANCE_SIGNIN_LIMIT_PER_MINUTE: '10', TRUST_PROXY: trustProxy })
      )
    )
  })
  after(async () => {
    await Promise.all(limited.map((server) => server.stop()))
  })

  test('300 sign-ins within a minute from one address on one sheet all pass', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    const results = await inWaves(300, 20, (i) =>
      signIn(id, { nmec: 10_000 + i, name: `Student ${i}` }, { server: [a, b][i % 2] })
    )

    assert.deepEqual(
      results.filter((res) => res.status !== 201).map((res) => res.status),
      []
    )
    const [{ count }] = await db.sql`
      select count(*)::int from registrations r join attendance_sheets s on s.id = r.sheet_id where s.public_id = ${id}`
    assert.equal(count, 300)
  })

  test('past the limit, counted over both replicas: 429 with Retry-After, nothing written', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)

    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        signIn(id, { nmec: 1 + i, name: `Student ${i}` }, { server: limited[i % 2] })
      )
    )

    const statuses = results.map((res) => res.status)
    assert.equal(statuses.filter((status) => status === 201).length, 10, statuses.join())
    const refused = results.filter((res) => res.status === 429)
    assert.equal(refused.length, 2)
    for (const res of refused) {
      assert.equal(res.body.error, 'too-many-requests')
      const retryAfter = Number(res.headers.get('retry-after'))
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`)
    }
    assert.equal((await storedRegistrations(id)).length, 10)
  })

  test('the limit is per sheet: the same address still signs in on another sheet', async () => {
    const ana = await teacher()
    const busy = await openSheet(ana)
    const quiet = await openSheet(ana)
    await Promise.all(
      Array.from({ length: 11 }, (_, i) => signIn(busy, { nmec: 1 + i, name: `Student ${i}` }, { server: limited[0] }))
    )

    const res = await signIn(quiet, { nmec: 1, name: 'Maria Silva' }, { server: limited[1] })

    assert.equal(res.status, 201)
  })

  test('behind a trusted proxy each client address (X-Forwarded-For) has an allowance of its own', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    const from = (address: string) => ({ server: limited[0], headers: { 'x-forwarded-for': address } })
    for (let i = 0; i < 10; i++)
      assert.equal((await signIn(id, { nmec: 1 + i, name: `Student ${i}` }, from('10.0.0.1'))).status, 201)

    const sameAddress = await signIn(id, { nmec: 100, name: 'Maria Silva' }, from('10.0.0.1'))
    const otherAddress = await signIn(id, { nmec: 101, name: 'Joao Costa' }, from('10.0.0.2'))

    assert.equal(sameAddress.status, 429)
    assert.equal(otherAddress.status, 201)
  })

  test('without a trusted proxy X-Forwarded-For is ignored: a client cannot claim fresh addresses', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    for (let i = 0; i < 10; i++) {
      const res = await signIn(
        id,
        { nmec: 1 + i, name: `Student ${i}` },
        { server: limited[1], headers: { 'x-forwarded-for': `10.0.1.${i}` } }
      )
      assert.equal(res.status, 201)
    }

    const res = await signIn(
      id,
      { nmec: 100, name: 'Maria Silva' },
      { server: limited[1], headers: { 'x-forwarded-for': '10.0.2.1' } }
    )

    assert.equal(res.status, 429)
  })
})

describe('metrics', () => {
  test('sign-ins are counted by outcome', async () => {
    const ana = await teacher()
    const id = await openSheet(ana)
    await signIn(id, { nmec: 1, name: 'Maria Silva' })
    await signIn(id, { nmec: 1, name: 'Maria Silva' })

    const res = await request(a.url, 'GET', '/metrics')

    assert.match(res.text, /^tandem_attendance_signins_total\{outcome="registered"\} [1-9]\d*$/m)
    assert.match(res.text, /^tandem_attendance_signins_total\{outcome="duplicate"\} [1-9]\d*$/m)
    assert.match(res.text, /^tandem_attendance_sheets_created_total [1-9]\d*$/m)
  })
})
