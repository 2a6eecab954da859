import type { Readable } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import fp from 'fastify-plugin'
import { Type } from 'typebox'
import { Counter, Gauge } from 'prom-client'
import type { Config } from '../../config.js'
import type { Queryable, Sql } from '../../db/pool.js'
import { Conflict, ErrorBody, Forbidden, NotFound, TooManyRequests } from '../../platform/errors.js'
import { idempotencyHeader } from '../../platform/idempotency.js'
import { int4 } from '../../platform/validation.js'
import { refused, type Limit } from '../../platform/rate-limit.js'
import { csvPageSize, studentsCsv } from './download.js'
import { sheetEvents } from './events.js'
import {
  createSheet,
  findSheet,
  findSheetAccess,
  listCourseUnits,
  listDepartments,
  listDepartmentUnits,
  listStudents,
  listUserCourseUnits,
  listUserSheets,
  removeStudents,
  setSheetStatus,
  signIn,
  studentsPage,
  type SheetAccess,
  type SignInResult,
  type Student
} from './queries.js'
import {
  CourseParams,
  CourseSheets,
  CourseUnit,
  CreatedSheet,
  Department,
  DepartmentParams,
  isPublicId,
  NewSheet,
  Removal,
  Removed,
  Sheet,
  SheetParams,
  SignIn,
  Status,
  StatusChange,
  Student as StudentBody
} from './schema.js'
import { Slots } from './slots.js'

export interface AttendanceOptions {
  sql: Sql
  config: Pick<
    Config,
    | 'signInLimitPerMinute'
    | 'sheetMissLimitPerMinute'
    | 'publicUrl'
    | 'csvExportsPerUser'
    | 'csvExportsPerProcess'
    | 'csvSendTimeoutMs'
    | 'eventStreamsPerUser'
    | 'eventStreamsPerProcess'
    | 'eventStreamBufferBytes'
  >
}

const tags = ['attendance']
const unitsMaxAgeSeconds = 86_400

class UnknownSheet extends NotFound {
  constructor() {
    super('attendance sheet')
  }
}

/** 404 for an unknown sheet before 403 for someone else's: the contract's order. */
function requireCreator<T extends SheetAccess>(sheet: T | undefined, userId: number): T {
  if (!sheet) throw new UnknownSheet()
  if (sheet.creatorId !== userId) throw new Forbidden('only the creator of this attendance sheet may do this')
  return sheet
}

const studentJson = (student: Student) => ({ ...student, timestamp: student.timestamp.toISOString() })

/** Attendance sheets: teachers open them, students sign in, teachers watch, fix, close and export. */
const routes: FastifyPluginAsyncTypebox<AttendanceOptions> = async (app, { sql, config }) => {
  const signIns = new Counter({
    name: 'tandem_attendance_signins_total',
    help: 'Sign-ins on attendance sheets by outcome',
    labelNames: ['outcome'],
    registers: [app.metrics]
  })
  const sheetsCreated = new Counter({
    name: 'tandem_attendance_sheets_created_total',
    help: 'Attendance sheets opened',
    registers: [app.metrics]
  })
  const events = sheetEvents(sql, app.log, { bufferBytes: config.eventStreamBufferBytes })
  const streamSlots = new Slots('event streams', config.eventStreamsPerUser, config.eventStreamsPerProcess)
  const downloadSlots = new Slots('CSV downloads', config.csvExportsPerUser, config.csvExportsPerProcess)
  new Gauge({
    name: 'tandem_attendance_event_streams',
    help: 'Open event streams of sheet pages on this process',
    registers: [app.metrics],
    collect() {
      this.set(events.count())
    }
  })
  new Gauge({
    name: 'tandem_attendance_csv_exports',
    help: 'CSV downloads in progress on this process',
    registers: [app.metrics],
    collect() {
      this.set(downloadSlots.size)
    }
  })
  // Unknown ids looked up or signed in on, per client address: a budget too small to enumerate 57^6 ids.
  const missLimit = (address: string): Limit => ({
    key: `sheet-miss:${address}`,
    perMinute: config.sheetMissLimitPerMinute
  })
  // preClose, not onClose: onClose runs only once every connection has ended, and these never end by themselves.
  app.addHook('preClose', async () => events.close())

  /**
   * The address's limits that come before a sign-in's statement (which holds the third, its misses):
   * its sign-ins on this sheet, and a malformed id that cannot exist booking its miss. An outcome when
   * they decide it, before any write.
   */
  async function signInLimits(address: string, id: string): Promise<SignInResult | undefined> {
    const limit = missLimit(address)
    try {
      if (!isPublicId(id)) {
        await app.rateLimit(limit.key, limit.perMinute)
        return { outcome: 'unknown-sheet' }
      }
      await app.rateLimit(`signin:${address}:${id}`, config.signInLimitPerMinute)
    } catch (error) {
      if (error instanceof TooManyRequests) return { outcome: 'rate-limited', waitSeconds: error.retryAfterSeconds }
      throw error
    }
    return undefined
  }

  /** The student signed in, or the refusal the contract gives the outcome. */
  function signInAnswer(result: SignInResult) {
    signIns.inc({ outcome: result.outcome })
    switch (result.outcome) {
      case 'rate-limited':
        throw refused(result.waitSeconds, 'sheet-miss')
      case 'unknown-sheet':
        throw new UnknownSheet()
      case 'closed':
        throw new Forbidden('this attendance sheet is closed')
      case 'duplicate':
        throw new Conflict('already-registered', 'this student number is already on this sheet')
      case 'registered':
        return studentJson(result.student)
    }
  }

  app.get(
    '/api/department/all',
    {
      schema: { tags, summary: 'Departments by id', response: { 200: Type.Array(Department) } }
    },
    async () => listDepartments(sql)
  )

  app.get(
    '/api/department/:id/course_units',
    {
      schema: {
        tags,
        summary: "A department's course units by id",
        params: DepartmentParams,
        response: { 200: Type.Array(CourseUnit), 404: ErrorBody }
      }
    },
    async (request) => {
      const id = int4(request.params.id)
      const units = id === undefined ? undefined : await listDepartmentUnits(sql, id)
      if (!units) throw new NotFound('department')
      return units
    }
  )

  app.get(
    '/api/course_units',
    {
      schema: { tags, summary: 'Every course unit by name', response: { 200: Type.Array(CourseUnit) } }
    },
    async (_request, reply) => {
      reply.header('cache-control', `public, max-age=${unitsMaxAgeSeconds}`)
      return listCourseUnits(sql)
    }
  )

  app.get(
    '/api/course_units/my',
    {
      config: { auth: 'required' },
      schema: {
        tags,
        summary: 'The course units of the caller’s sheets, by name',
        response: { 200: Type.Array(CourseUnit) }
      }
    },
    async (request) => listUserCourseUnits(sql, request.caller.id)
  )

  app.post(
    '/api/attendance/sheet/new',
    {
      config: { auth: 'required', idempotent: true },
      schema: {
        tags,
        summary: 'Open a sheet for a lesson',
        body: NewSheet,
        response: { 201: CreatedSheet, 404: ErrorBody, 409: ErrorBody }
      }
    },
    async (request, reply) => {
      const { summary } = request.body
      const userId = request.caller.id
      const create = async (db: Queryable) => {
        const attendanceId = await createSheet(db, userId, request.body.courseUnit, summary)
        if (!attendanceId) throw new NotFound('course unit')
        sheetsCreated.inc()
        return { attendanceId }
      }
      if (request.headers[idempotencyHeader] === undefined) return reply.code(201).send(await create(sql))
      await app.idempotent(request, reply, { scope: `user:${userId}`, status: 201, write: create })
      return reply
    }
  )

  app.get(
    '/api/attendance/sheet/:id',
    {
      schema: {
        tags,
        summary: 'A sheet as its sign-in page shows it (anyone)',
        description:
          'Lookups of sheets that do not exist are limited per client address (SHEET_MISS_LIMIT_PER_MINUTE); ' +
          'once they are spent, every lookup and sign-in from that address is 429 until they come back.',
        params: SheetParams,
        response: { 200: Sheet, 404: ErrorBody, 429: ErrorBody }
      }
    },
    async (request) => {
      const { id } = request.params
      const limit = missLimit(request.ip)
      // A malformed id cannot exist: it only books its miss.
      if (!isPublicId(id)) {
        await app.rateLimit(limit.key, limit.perMinute)
        throw new UnknownSheet()
      }
      const lookup = await findSheet(sql, id, limit)
      if (!lookup.admitted) throw refused(lookup.waitSeconds, limit.key)
      const sheet = lookup.found
      if (!sheet) throw new UnknownSheet()
      const origin = config.publicUrl ?? `${request.protocol}://${request.host}`
      const signInUrl = `${origin}/reg.html?id=${encodeURIComponent(sheet.id)}`
      return { ...sheet, timestamp: sheet.timestamp.toISOString(), signInUrl }
    }
  )

  app.get(
    '/api/attendance/sheets/:courseId',
    {
      config: { auth: 'required' },
      schema: {
        tags,
        summary: "The caller's sheets of a course unit, newest first",
        params: CourseParams,
        response: { 200: CourseSheets }
      }
    },
    async (request) => {
      const courseUnit = Number(request.params.courseId)
      const id = int4(request.params.courseId)
      const sheets = id === undefined ? [] : await listUserSheets(sql, request.caller.id, id)
      return {
        courseUnit,
        attendances: sheets.map((sheet) => ({ ...sheet, registerTimestamp: sheet.registerTimestamp.toISOString() }))
      }
    }
  )

  app.post(
    '/api/attendance/sheet/:id/status',
    {
      config: { auth: 'required' },
      schema: {
        tags,
        summary: 'Open or close the sheet (its creator)',
        params: SheetParams,
        body: StatusChange,
        response: { 200: Status, 403: ErrorBody, 404: ErrorBody }
      }
    },
    async (request) => {
      const { id } = request.params
      const sheet = isPublicId(id) ? await setSheetStatus(sql, id, request.caller.id, request.body.status) : undefined
      return { isActive: requireCreator(sheet, request.caller.id).isActive! }
    }
  )

  app.get(
    '/api/attendance/sheet/:id/students',
    {
      config: { auth: 'required' },
      schema: {
        tags,
        summary: "The sheet's students by sign-in time (its creator)",
        params: SheetParams,
        response: { 200: Type.Array(StudentBody), 403: ErrorBody, 404: ErrorBody }
      }
    },
    async (request) => {
      const { id } = request.params
      const sheet = isPublicId(id) ? await listStudents(sql, id, request.caller.id) : undefined
      return requireCreator(sheet, request.caller.id).students.map(studentJson)
    }
  )

  app.get(
    '/api/attendance/sheet/:id/students.csv',
    {
      config: { auth: 'required', longLived: true }, // its own caps bound it, not the in-flight limit
      schema: {
        tags,
        summary: "The sheet's students as CSV, streamed (its creator)",
        description:
          'At most CSV_EXPORTS_PER_USER downloads per user and CSV_EXPORTS_PER_PROCESS per server at once (429 beyond); ' +
          'a download whose client takes nothing for CSV_SEND_TIMEOUT_MS is cut.',
        params: SheetParams,
        response: {
          200: {
            description: 'A header line `Timestamp,Student number,Name`, then one line per student by sign-in time',
            content: { 'text/csv': { schema: Type.Unsafe<Readable>({ type: 'string' }) } }
          },
          403: ErrorBody,
          404: ErrorBody,
          429: ErrorBody
        }
      }
    },
    async (request, reply) => {
      downloadSlots.hold(request.caller.id, reply.raw)
      const { id } = request.params
      const sheet = requireCreator(isPublicId(id) ? await findSheetAccess(sql, id) : undefined, request.caller.id)
      const first = await studentsPage(sql, sheet.id, undefined, csvPageSize)
      return reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="attendance-${id}.csv"`)
        .header('cache-control', 'no-store')
        .send(
          studentsCsv({
            sql,
            sheetId: sheet.id,
            first,
            res: reply.raw,
            sendTimeoutMs: config.csvSendTimeoutMs,
            log: request.log
          })
        )
    }
  )

  app.get(
    '/api/attendance/sheet/:id/events',
    {
      config: { auth: 'required', longLived: true }, // its own caps bound it, not the in-flight limit
      schema: {
        tags,
        summary: 'Server-sent events: `change` {sheet, reason} whenever the sheet changes on any replica (its creator)',
        description:
          'At most EVENT_STREAMS_PER_USER streams per user and EVENT_STREAMS_PER_PROCESS per server (429 beyond); ' +
          'a stream ends when its session does, and is closed when its client falls EVENT_STREAM_BUFFER_BYTES behind.',
        params: SheetParams,
        response: {
          200: {
            description:
              'events `change` with data `{"sheet": id, "reason": "registered" | "removed" | "status" | "reconnected"}`',
            content: { 'text/event-stream': { schema: Type.String() } }
          },
          403: ErrorBody,
          404: ErrorBody,
          429: ErrorBody
        }
      }
    },
    async (request, reply) => {
      streamSlots.hold(request.caller.id, reply.raw)
      const { id } = request.params
      requireCreator(isPublicId(id) ? await findSheetAccess(sql, id) : undefined, request.caller.id)
      const sessionEnded = new AbortController()
      const unwatch = await app.watchSession(request.sessionToken!, () => sessionEnded.abort())
      if (reply.raw.closed)
        unwatch() // its client left while this waited
      else reply.raw.once('close', unwatch)
      await events.stream(id, reply, sessionEnded.signal)
      return reply
    }
  )

  app.post(
    '/api/attendance/sheet/:id/student/registration',
    {
      config: { auth: 'optional', idempotent: true },
      schema: {
        tags,
        summary: 'Sign a student in: anyone on an open sheet, its creator on a closed one',
        params: SheetParams,
        body: SignIn,
        response: { 201: StudentBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 429: ErrorBody }
      }
    },
    async (request, reply) => {
      const { id } = request.params
      const { name } = request.body
      const early = await signInLimits(request.ip, id)
      if (early) return signInAnswer(early)
      const caller = request.user?.id ?? null
      const register = async (db: Queryable) =>
        signInAnswer(await signIn(db, id, caller, request.body.nmec, name, missLimit(request.ip)))
      if (request.headers[idempotencyHeader] === undefined) return reply.code(201).send(await register(sql))
      // A teacher's keys are theirs; an anonymous student's, their address's.
      const scope = caller === null ? `address:${request.ip}` : `user:${caller}`
      await app.idempotent(request, reply, { scope, status: 201, write: register })
      return reply
    }
  )

  app.delete(
    '/api/attendance/sheet/:id/student/deletion',
    {
      config: { auth: 'required' },
      schema: {
        tags,
        summary: 'Remove students from the sheet (its creator); numbers not on it are ignored',
        params: SheetParams,
        body: Removal,
        response: { 200: Removed, 403: ErrorBody, 404: ErrorBody }
      }
    },
    async (request) => {
      const { id } = request.params
      const sheet = isPublicId(id) ? await removeStudents(sql, id, request.caller.id, request.body.nmecs) : undefined
      return { removed: requireCreator(sheet, request.caller.id).removed }
    }
  )
}

/**
 * Encapsulated (its hooks and decorators stay its own), and named with the platform plugins it needs:
 * Fastify refuses to start when one is missing or comes after it, rather than app.ts's line order
 * deciding silently (the error and session hooks, and the OpenAPI document, must see its routes).
 */
export const attendanceRoutes = fp(routes, {
  name: 'attendance',
  dependencies: ['errors', 'docs', 'metrics', 'auth', 'rate-limit', 'idempotency'],
  encapsulate: true
})
