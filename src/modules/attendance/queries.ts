import { randomInt } from 'node:crypto'
import type { Queryable, Sql } from '../../db/pool.js'
import { admission, type Limit } from '../../platform/rate-limit.js'
import { displayNameOf } from '../accounts/queries.js'
import { publicIdAlphabet } from './schema.js'

export interface CourseUnit {
  id: number
  name: string
  department: number
}

export interface Student {
  nmec: number
  name: string
  timestamp: Date
}

/** What a creator-only request learns of the sheet: undefined when there is no such sheet. */
export interface SheetAccess {
  creatorId: number
}

export async function listDepartments(sql: Sql) {
  return sql<{ id: number; name: string; initials: string }[]>`
    select id, name, initials from departments order by id`
}

/** The department's units by id; undefined when there is no such department. */
export async function listDepartmentUnits(sql: Sql, departmentId: number): Promise<CourseUnit[] | undefined> {
  const rows = await sql<{ id: number | null; name: string | null }[]>`
    select cu.id, cu.name
      from departments d left join course_units cu on cu.department_id = d.id
     where d.id = ${departmentId}
     order by cu.id`
  if (rows.length === 0) return undefined
  return rows
    .filter((row) => row.id !== null)
    .map((row) => ({ id: row.id!, name: row.name!, department: departmentId }))
}

export async function listCourseUnits(sql: Sql) {
  return sql<CourseUnit[]>`
    select id, name, department_id as department from course_units order by name, id`
}

/** The units the user has opened sheets for. */
export async function listUserCourseUnits(sql: Sql, userId: number) {
  return sql<CourseUnit[]>`
    select cu.id, cu.name, cu.department_id as department
      from course_units cu
     where exists (select 1 from attendance_sheets s where s.course_unit_id = cu.id and s.creator_id = ${userId})
     order by cu.name, cu.id`
}

const idAttempts = 5

function randomPublicId(): string {
  return Array.from({ length: 6 }, () => publicIdAlphabet[randomInt(publicIdAlphabet.length)]).join('')
}

/**
 * A new open sheet under a random public id; undefined when the course unit does not exist. A taken
 * id (1 in 57^6 per sheet) leaves the insert empty and another one is drawn; the unique constraint
 * decides, so replicas drawing the same id at once cannot both have it.
 */
export async function createSheet(
  sql: Queryable,
  creatorId: number,
  courseUnit: number,
  summary: string | undefined
): Promise<string | undefined> {
  for (let attempt = 1; attempt <= idAttempts; attempt++) {
    const [row] = await sql<{ publicId: string | null; unitExists: boolean }[]>`
      with unit as (
        select id from course_units where id = ${courseUnit}
      ), created as (
        insert into attendance_sheets (public_id, creator_id, course_unit_id, summary)
        select ${randomPublicId()}, ${creatorId}, unit.id, ${summary ?? null} from unit
        on conflict (public_id) do nothing
        returning public_id
      )
      select (select public_id from created) as "publicId", exists (select 1 from unit) as "unitExists"`
    if (!row.unitExists) return undefined
    if (row.publicId) return row.publicId
  }
  throw new Error(`no free sheet id after ${idAttempts} random draws`)
}

export interface SheetView {
  id: string
  timestamp: Date
  courseUnit: number
  courseUnitName: string
  creatorName: string
  summary: string | null
  isActive: boolean
}

/** What a lookup under the address's limit of misses found; `admitted` false: refused, nothing looked at. */
export type Admitted<T> = { admitted: false; waitSeconds: number | null } | { admitted: true; found: T | undefined }

/**
 * The sheet as its sign-in page shows it, under `missLimit`: a miss books one attempt, a hit books
 * nothing, and once the misses are spent every lookup is refused, hit or miss, so the answers cannot
 * tell which ids exist. One statement: the limit's row lock orders the lookups of one address.
 */
export async function findSheet(sql: Sql, publicId: string, missLimit: Limit): Promise<Admitted<SheetView>> {
  const limit = admission(sql, missLimit, sql`not exists (select 1 from sheet)`)
  const [row] = await sql<
    Array<{ admitted: boolean; waitSeconds: number | null } & (({ id: string } & Omit<SheetView, 'id'>) | { id: null })>
  >`
    with sheet as (
      select s.public_id as id, s.created_at as timestamp, cu.id as "courseUnit", cu.name as "courseUnitName",
             ${displayNameOf(sql, sql`s.creator_id`)} as "creatorName", s.summary, s.is_active as "isActive"
        from attendance_sheets s
        join course_units cu on cu.id = s.course_unit_id
       where s.public_id = ${publicId}
    ), ${limit.cte}
    select ${limit.allowed} as admitted, ${limit.waitSeconds} as "waitSeconds", sheet.*
      from (values (true)) as request left join sheet on true`
  if (!row.admitted) return { admitted: false, waitSeconds: row.waitSeconds }
  if (row.id === null) return { admitted: true, found: undefined }
  const { admitted: _admitted, waitSeconds: _waitSeconds, ...sheet } = row
  return { admitted: true, found: sheet }
}

/** The user's sheets of one course unit, newest first. */
export async function listUserSheets(sql: Sql, userId: number, courseUnit: number) {
  return sql<{ id: string; registerTimestamp: Date; summary: string | null; isActive: boolean }[]>`
    select public_id as id, created_at as "registerTimestamp", summary, is_active as "isActive"
      from attendance_sheets
     where creator_id = ${userId} and course_unit_id = ${courseUnit}
     order by created_at desc, id desc`
}

/**
 * The sheet's creator, for creator-only reads. A sheet's creator never changes and sheets are not
 * deleted, so a check made before a following read still holds when that read runs.
 */
export async function findSheetAccess(sql: Sql, publicId: string): Promise<(SheetAccess & { id: number }) | undefined> {
  const [sheet] = await sql<{ id: number; creatorId: number }[]>`
    select id, creator_id as "creatorId" from attendance_sheets where public_id = ${publicId}`
  return sheet
}

/** Opens or closes the sheet if the user created it. `isActive` null: not the creator, nothing changed. */
export async function setSheetStatus(sql: Sql, publicId: string, userId: number, active: boolean) {
  const [row] = await sql<(SheetAccess & { isActive: boolean | null })[]>`
    with sheet as (
      select id, creator_id from attendance_sheets where public_id = ${publicId}
    ), updated as (
      update attendance_sheets s set is_active = ${active}
        from sheet
       where s.id = sheet.id and sheet.creator_id = ${userId}
      returning s.is_active
    )
    select sheet.creator_id as "creatorId", (select is_active from updated) as "isActive" from sheet`
  return row
}

/** The sheet's students by sign-in time, read only for its creator: one statement, one snapshot. */
export async function listStudents(
  sql: Sql,
  publicId: string,
  userId: number
): Promise<(SheetAccess & { students: Student[] }) | undefined> {
  const rows = await sql<{ creatorId: number; nmec: number | null; name: string | null; timestamp: Date | null }[]>`
    select s.creator_id as "creatorId", r.nmec, r.name, r.registered_at as timestamp
      from attendance_sheets s
      left join registrations r on r.sheet_id = s.id and s.creator_id = ${userId}
     where s.public_id = ${publicId}
     order by r.registered_at, r.nmec`
  if (rows.length === 0) return undefined
  const students = rows.filter((row) => row.nmec !== null) as Student[]
  return { creatorId: rows[0].creatorId, students }
}

/** Where a page of a sheet's students ended: its last row's sign-in time as PostgreSQL's text (to the microsecond) and number. */
export interface PageEnd {
  registeredAt: string
  nmec: number
}

/**
 * The same list a page at a time, each page one short statement after the last row of the one before
 * (keyset on registrations_by_time), so a download holds a connection only while a page is read,
 * never while its client is slow. The key is the timestamp's text, not the Date, which keeps only
 * milliseconds and would repeat or skip students who signed in within the same millisecond; it goes
 * back as text and is cast in SQL, since postgres.js would turn a timestamptz parameter into a Date. Each
 * page reads the sheet as it is then: a student removed during a download is left out of the pages
 * still to come.
 */
export async function studentsPage(sql: Sql, sheetId: number, after: PageEnd | undefined, size: number) {
  return sql<(Student & PageEnd)[]>`
    select nmec, name, registered_at as timestamp, registered_at::text as "registeredAt"
      from registrations
     where sheet_id = ${sheetId}
       ${after ? sql`and (registered_at, nmec) > (${after.registeredAt}::text::timestamptz, ${after.nmec}::integer)` : sql``}
     order by registered_at, nmec
     limit ${size}`
}

export type SignInResult =
  | { outcome: 'registered'; student: Student }
  | { outcome: 'unknown-sheet' | 'closed' | 'duplicate' }
  | { outcome: 'rate-limited'; waitSeconds: number | null }

/**
 * Signs a student in, in one statement, under the address's `missLimit` as `findSheet` applies it.
 * The sheet row is read FOR SHARE, so a racing close either commits first (and the WHERE sees the
 * sheet closed) or waits until this registration has committed: no registration lands on a sheet
 * after its close was answered. A repeat nmec conflicts on the key and changes nothing, also when
 * both arrive at once on different replicas.
 */
export async function signIn(
  sql: Queryable,
  publicId: string,
  caller: number | null,
  nmec: number,
  name: string,
  missLimit: Limit
): Promise<SignInResult> {
  const limit = admission(sql, missLimit, sql`not exists (select 1 from sheet)`)
  const [row] = await sql<
    {
      admitted: boolean
      waitSeconds: number | null
      found: boolean
      isActive: boolean | null
      isCreator: boolean
      nmec: number | null
      name: string | null
      timestamp: Date | null
    }[]
  >`
    with sheet as (
      select id, is_active, creator_id = ${caller} as is_creator
        from attendance_sheets where public_id = ${publicId}
         for share
    ), ${limit.cte}, inserted as (
      insert into registrations (sheet_id, nmec, name, added_by)
      select id, ${nmec}, ${name}, case when is_creator then ${caller}::integer end from sheet
       where (is_active or is_creator) and ${limit.allowed}
      on conflict (sheet_id, nmec) do nothing
      returning nmec, name, registered_at
    )
    select ${limit.allowed} as admitted, ${limit.waitSeconds} as "waitSeconds", sheet.id is not null as found,
           sheet.is_active as "isActive", coalesce(sheet.is_creator, false) as "isCreator",
           inserted.nmec, inserted.name, inserted.registered_at as timestamp
      from (values (true)) as request left join sheet on true left join inserted on true`
  if (!row.admitted) return { outcome: 'rate-limited', waitSeconds: row.waitSeconds }
  if (!row.found) return { outcome: 'unknown-sheet' }
  if (row.nmec !== null)
    return { outcome: 'registered', student: { nmec: row.nmec, name: row.name!, timestamp: row.timestamp! } }
  if (!row.isActive && !row.isCreator) return { outcome: 'closed' }
  return { outcome: 'duplicate' }
}

/** Removes the listed students if the user created the sheet; unknown numbers are ignored. */
export async function removeStudents(sql: Sql, publicId: string, userId: number, nmecs: number[]) {
  const [row] = await sql<(SheetAccess & { removed: number })[]>`
    with sheet as (
      select id, creator_id from attendance_sheets where public_id = ${publicId}
    ), removed as (
      delete from registrations r
       using sheet
       where r.sheet_id = sheet.id and sheet.creator_id = ${userId} and r.nmec = any(${nmecs}::integer[])
      returning 1
    )
    select sheet.creator_id as "creatorId", (select count(*)::int from removed) as removed from sheet`
  return row
}
