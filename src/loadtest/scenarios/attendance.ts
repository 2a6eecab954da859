import {
  type ConsistencyFailure,
  type Context,
  type Outcome,
  type Reply,
  type Scenario,
  type ScenarioRun,
  rampThenHold
} from '../scenario.js'
import { signUp } from './increments.js'

/** The original app's Locust test: 40 classes of 50 students. */
const classes = 40
const setupConcurrency = 4
const streamConnectMs = 10_000
const announceWaitMs = 10_000

/**
 * A teacher's sheet page holding `GET /api/attendance/sheet/:id/events` open, counting what it is
 * told. Ours, not the engine's: the stream lasts the whole run and is read as it comes.
 */
class SheetStream {
  registered = 0
  reconnected = 0
  /** Why the stream ended before we closed it, if it did. */
  ended: string | undefined
  private readonly aborter = new AbortController()
  private closing = false

  /** Resolves once the server has said `: connected` (it listens from then on). */
  async open(url: string, token: string): Promise<void> {
    const timer = setTimeout(() => this.aborter.abort(), streamConnectMs)
    try {
      const res = await fetch(url, {
        headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
        signal: this.aborter.signal
      })
      if (res.status !== 200 || !res.body) throw new Error(`status ${res.status}: ${(await res.text()).slice(0, 200)}`)
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
      let buffer = ''
      for (;;) {
        const { done, value } = await reader.read()
        if (done) throw new Error('the stream ended before `: connected`')
        buffer += value
        if (buffer.includes('\n\n')) break
      }
      clearTimeout(timer)
      void this.read(reader, buffer)
    } catch (error) {
      clearTimeout(timer)
      this.aborter.abort()
      throw error
    }
  }

  close() {
    this.closing = true
    this.aborter.abort()
  }

  private async read(reader: ReadableStreamDefaultReader<string>, buffer: string) {
    try {
      for (;;) {
        let end: number
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          this.event(buffer.slice(0, end))
          buffer = buffer.slice(end + 2)
        }
        const { done, value } = await reader.read()
        if (done) break
        buffer += value
      }
      if (!this.closing) this.ended = 'closed by the server'
    } catch (error) {
      if (!this.closing) this.ended = (error as Error).message
    }
  }

  private event(block: string) {
    const data = block
      .split('\n')
      .find((line) => line.startsWith('data:'))
      ?.slice(5)
      .trim()
    if (!data) return // a comment: `: connected`, `: keep-alive`
    try {
      const { reason } = JSON.parse(data) as { reason?: string }
      if (reason === 'registered') this.registered++
      if (reason === 'reconnected') this.reconnected++
    } catch {
      this.ended = `unreadable event ${data.slice(0, 100)}`
    }
  }
}

interface Classroom {
  token: string
  sheet: string
  stream: SheetStream
  /** Student numbers in the order their sign-ins were acknowledged (201). */
  acked: number[]
  sent: Set<number>
  /** Answered with a refusal that writes nothing (4xx). */
  refused: Set<number>
  /** Left without a clear answer (no answer, 5xx): each may or may not be stored. */
  unknown: Set<number>
}

const studentName = (nmec: number) => `Student ${String(nmec).padStart(5, '0')}`

async function openClassroom(ctx: Context, index: number): Promise<Classroom> {
  const token = await signUp(ctx, { firstName: 'Teacher', lastName: `Class ${index + 1}` })
  let sheet = ''
  const created = await ctx.step(async () => {
    const group = 'setup: create sheet'
    const reply = await ctx.http({
      method: 'POST',
      path: '/api/attendance/sheet/new',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ courseUnit: index % 4, summary: `LOAD ${index + 1}` })
    })
    if ('error' in reply) return { group, ok: false, reason: reply.error }
    const id = (reply.body as { attendanceId?: unknown } | undefined)?.attendanceId
    if (reply.status !== 201 || typeof id !== 'string')
      return { group, ok: false, reason: `status ${reply.status}`, detail: reply.text.slice(0, 200) }
    sheet = id
    return { group, ok: true }
  })
  if (!created.ok) throw new Error(`setup: create sheet: ${created.reason} ${created.detail ?? ''}`)
  const stream = new SheetStream()
  const connected = await ctx.step(async () => {
    const group = 'setup: open event stream'
    try {
      await stream.open(`${ctx.target}/api/attendance/sheet/${sheet}/events`, token)
      return { group, ok: true }
    } catch (error) {
      return { group, ok: false, reason: 'no stream', detail: (error as Error).message }
    }
  })
  if (!connected.ok) throw new Error(`setup: event stream of ${sheet}: ${connected.detail}`)
  return { token, sheet, stream, acked: [], sent: new Set(), refused: new Set(), unknown: new Set() }
}

function run(): ScenarioRun {
  const rooms: Classroom[] = []
  let arrivals = 0
  const closeStreams = () => rooms.forEach((room) => room.stream.close())

  async function signIn(ctx: Context): Promise<Outcome> {
    const group = 'signin'
    // Arrival i is student i / 40 of class i % 40: the classes fill up together, each student once.
    const i = arrivals++
    const room = rooms[i % rooms.length]
    const nmec = 1 + Math.floor(i / rooms.length)
    const name = studentName(nmec)
    room.sent.add(nmec)
    const reply = await ctx.http({
      method: 'POST',
      path: `/api/attendance/sheet/${room.sheet}/student/registration`,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ nmec, name })
    })
    if ('error' in reply) {
      room.unknown.add(nmec)
      return { group, ok: false, reason: reply.error, detail: reply.message }
    }
    if (reply.status === 201) {
      room.acked.push(nmec)
      const body = reply.body as { nmec?: unknown; name?: unknown } | undefined
      if (body?.nmec !== nmec || body.name !== name) {
        ctx.inconsistency('malformed-answer', `${room.sheet} ${nmec}: ${reply.text.slice(0, 200)}`)
        return { group, ok: false, reason: 'malformed answer' }
      }
      return { group, ok: true }
    }
    if (reply.status >= 500) room.unknown.add(nmec)
    else room.refused.add(nmec)
    if (reply.status === 409)
      ctx.inconsistency('phantom-duplicate', `${room.sheet}: ${nmec} signed in once, answered 409 already-registered`)
    return { group, ok: false, reason: `status ${reply.status}`, detail: reply.text.slice(0, 200) }
  }

  /** The student's page: the sheet's public face. */
  async function sheetPage(ctx: Context): Promise<Outcome> {
    const group = 'sheet-page'
    const room = rooms[ctx.random.int(0, rooms.length - 1)]
    const reply = await ctx.http({ method: 'GET', path: `/api/attendance/sheet/${room.sheet}` })
    if ('error' in reply) return { group, ok: false, reason: reply.error, detail: reply.message }
    if (reply.status !== 200) return { group, ok: false, reason: `status ${reply.status}` }
    const body = reply.body as { id?: unknown; isActive?: unknown } | undefined
    if (body?.id !== room.sheet || body.isActive !== true) {
      ctx.inconsistency('sheet-page', `${room.sheet}: ${reply.text.slice(0, 200)}`)
      return { group, ok: false, reason: 'wrong sheet' }
    }
    return { group, ok: true }
  }

  /** The teacher's page reading the list afresh, as it does on every change event. */
  async function teacherList(ctx: Context): Promise<Outcome> {
    const group = 'teacher-list'
    const room = rooms[ctx.random.int(0, rooms.length - 1)]
    const ackedBefore = room.acked.length
    const reply = await listOf(ctx, room)
    if ('error' in reply) return { group, ok: false, reason: reply.error, detail: reply.message }
    if (reply.status !== 200) return { group, ok: false, reason: `status ${reply.status}` }
    const problems = listProblems(room, reply.body, room.acked.slice(0, ackedBefore))
    for (const problem of problems) ctx.inconsistency(problem.name, problem.detail)
    return problems.length === 0 ? { group, ok: true } : { group, ok: false, reason: problems[0].name }
  }

  return {
    async setup(ctx) {
      ctx.signal.addEventListener('abort', closeStreams, { once: true })
      let next = 0
      let failure: unknown
      const worker = async () => {
        for (let index = next++; index < classes && !ctx.signal.aborted && !failure; index = next++) {
          try {
            rooms.push(await openClassroom(ctx, index))
          } catch (error) {
            failure ??= error
          }
        }
      }
      // Every worker stops before the streams close: one still opening would hold the process open.
      await Promise.all(Array.from({ length: setupConcurrency }, worker))
      if (failure || ctx.signal.aborted) closeStreams()
      if (failure) throw failure
    },

    async request(stream, ctx) {
      if (stream === 'signin') return signIn(ctx)
      if (stream === 'sheet-page') return sheetPage(ctx)
      return teacherList(ctx)
    },

    async finish(ctx) {
      try {
        return await finalChecks(ctx, rooms)
      } finally {
        closeStreams()
      }
    }
  }
}

const listOf = (ctx: Context, room: Classroom): Promise<Reply> =>
  ctx.http({
    method: 'GET',
    path: `/api/attendance/sheet/${room.sheet}/students`,
    headers: { authorization: `Bearer ${room.token}` }
  })

/** What a list must hold: `mustHold` (acknowledged before it was asked for) once each, nothing unsent or refused. */
function listProblems(room: Classroom, body: unknown, mustHold: number[]): ConsistencyFailure[] {
  if (!Array.isArray(body)) return [{ name: 'list-malformed', detail: `${room.sheet}: not an array` }]
  const problems: ConsistencyFailure[] = []
  const listed = new Set<number>()
  let previous = ''
  for (const student of body as Array<{ nmec: number; timestamp: string }>) {
    if (listed.has(student.nmec)) problems.push({ name: 'listed-twice', detail: `${room.sheet}: ${student.nmec}` })
    listed.add(student.nmec)
    if (!room.sent.has(student.nmec))
      problems.push({ name: 'listed-never-sent', detail: `${room.sheet}: ${student.nmec}` })
    if (room.refused.has(student.nmec))
      problems.push({ name: 'listed-though-refused', detail: `${room.sheet}: ${student.nmec}` })
    if (student.timestamp < previous)
      problems.push({ name: 'list-order', detail: `${room.sheet}: ${student.timestamp} after ${previous}` })
    previous = student.timestamp
  }
  const missing = mustHold.filter((nmec) => !listed.has(nmec))
  if (missing.length > 0)
    problems.push({
      name: 'acknowledged-not-listed',
      detail: `${room.sheet}: ${missing.length} acknowledged sign-ins missing, e.g. ${missing.slice(0, 5).join(', ')}`
    })
  return problems
}

/**
 * Each sheet's list against its acknowledged sign-ins; then its stream against its list: every
 * sign-in is its own INSERT, whose trigger NOTIFYs once, so the stream announces exactly as many
 * `registered` changes as the list holds students (unless the server's LISTEN was cut meanwhile,
 * which it says with a `reconnected` event, and which excuses missed announcements).
 */
async function finalChecks(ctx: Context, rooms: Classroom[]): Promise<ConsistencyFailure[]> {
  const failures: ConsistencyFailure[] = []
  const listedCounts = new Map<Classroom, number>()
  for (const room of rooms) {
    const reply = await listOf(ctx, room)
    if ('error' in reply || reply.status !== 200) {
      failures.push({
        name: 'list-unreadable',
        detail: `${room.sheet}: ${'error' in reply ? reply.error : `status ${reply.status}`}`
      })
      continue
    }
    failures.push(...listProblems(room, reply.body, room.acked))
    listedCounts.set(room, (reply.body as unknown[]).length)
  }
  // Announcements trail the answers: each needs its NOTIFY to reach the stream's replica.
  const settled = () => [...listedCounts].every(([room, listed]) => room.stream.registered >= listed)
  for (const deadline = Date.now() + announceWaitMs; !settled() && Date.now() < deadline && !ctx.signal.aborted;) {
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  for (const [room, listed] of listedCounts) {
    const { stream } = room
    if (stream.ended) failures.push({ name: 'event-stream-ended', detail: `${room.sheet}: ${stream.ended}` })
    else if (stream.registered > listed)
      failures.push({
        name: 'announced-twice',
        detail: `${room.sheet}: ${stream.registered} sign-ins announced, ${listed} listed`
      })
    else if (stream.registered < listed && stream.reconnected === 0)
      failures.push({
        name: 'sign-in-not-announced',
        detail: `${room.sheet}: ${listed} listed, ${stream.registered} announced within ${announceWaitMs / 1000} s`
      })
  }
  return failures
}

/** The classroom's shape at scale 1: 2000 sign-ins within a minute, 40/s after a 20 s ramp. */
const burst = rampThenHold(40, 20, 40)

export const attendance: Scenario = {
  name: 'attendance',
  summary:
    'a classroom burst: 40 teachers each open a sheet and hold its event stream; 40 × 50 students load the ' +
    'sheet and sign in within a minute while the pages re-read their lists. The target needs ' +
    'REGISTRATION_LIMIT_PER_MINUTE ≥ 40 (40 teachers register from this one address)',
  checks: [
    'every 201 sign-in answers the student number and name sent; a 409 for a number sent once is a failure',
    "every list a teacher's page reads holds each sign-in acknowledged before it was asked for, once, in " +
      'sign-in order, and nothing never sent or refused',
    'after the load, each sheet lists every acknowledged sign-in exactly once',
    "each teacher's event stream stays open all run and announces exactly as many `registered` changes as " +
      'its sheet lists students (fewer allowed only after a `reconnected` event)'
  ],
  streams: [
    { name: 'signin', stages: burst },
    { name: 'sheet-page', stages: burst },
    { name: 'teacher-list', stages: burst }
  ],
  start: run
}
