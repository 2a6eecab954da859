import { randomInt } from 'node:crypto'
import type { Sql } from '../../db/pool.js'
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

export async function listDepartments (sql: Sql) {
  return sql<{ id: number, name: string, initials: string }[]>`
    select id, name, initials from departments order by id`
}

/** The department's units by id; undefined when there is no such department. */
export async function listDepartmentUnits (sql: Sql, departmentId: number): Promise<CourseUnit[] | undefined> {
  const rows = await sql<{ id: number | null, name: string | null }[]>`
    select cu.id, cu.name
      from departments d left join course_units cu on cu.department_id = d.id
     where d.id = ${departmentId}
     order by cu.id`
  if (rows.length === 0) return undefined
  return rows.filter((row) => row.id !== null).map((row) => ({ id: row.id!, name: row.name!, department: departmentId }))
}

export async function listCourseUnits (sql: Sql) {
  return sql<CourseUnit[]>`
    select id, name, department_id as department from course_units order by name, id`
}

/** The units the user has opened sheets for. */
export async function listUserCourseUnits (sql: Sql, userId: number) {
  return sql<CourseUnit[]>`
    select cu.id, cu.name, cu.department_id as department
      from course_units cu
     where exists (select 1 from attendance_sheets s where s.course_unit_id = cu.id and s.creator_id = ${userId})
     order by cu.name, cu.id`
}

const idAttempts = 5

function randomPublicId (): string {
  return Array.from({ length: 6 }, () => publicIdAlphabet[randomInt(publicIdAlphabet.length)]).join('')
}

/**
 * A new open sheet under a random public id; undefined when the course unit does not exist. A taken
 * id (1 in 57^6 per sheet) leaves the insert empty and another one is drawn; the unique constraint
 * decides, so replicas drawing the same id at once cannot both have it.
 */
export async function createSheet (sql: Sql, creatorId: number, courseUnit: number, summary: string | undefined): Promise<string | undefined> {
  for (let attempt = 1; attempt <= idAttempts; attempt++) {
    const [row] = await sql<{ publicId: string | null, unitExists: boolean }[]>`
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

export async function findSheet (sql: Sql, publicId: string) {
  const [sheet] = await sql<{
    id: string, timestamp: Date, courseUnit: number, courseUnitName: string, creatorName: string, summary: string | null, isActive: boolean
  }[]>`
    select s.public_id as id, s.created_at as timestamp, cu.id as "courseUnit", cu.name as "courseUnitName",
           btrim(u.first_name || ' ' || u.last_name) as "creatorName", s.summary, s.is_active as "isActive"
      from attendance_sheets s
      join course_units cu on cu.id = s.course_unit_id
      join users u on u.id = s.creator_id
     where s.public_id = ${publicId}`
  return sheet
}

/** The user's sheets of one course unit, newest first. */
export async function listUserSheets (sql: Sql, userId: number, courseUnit: number) {
  return sql<{ id: string, registerTimestamp: Date, summary: string | null, isActive: boolean }[]>`
    select public_id as id, created_at as "registerTimestamp", summary, is_active as "isActive"
      from attendance_sheets
     where creator_id = ${userId} and course_unit_id = ${courseUnit}
     order by created_at desc, id desc`
}

/**
 * The sheet's creator, for creator-only reads. A sheet's creator never changes and sheets are not
 * deleted, so a check made before a following read still holds when that read runs.
 */
export async function findSheetAccess (sql: Sql, publicId: string): Promise<(SheetAccess & { id: number }) | undefined> {
  const [sheet] = await sql<{ id: number, creatorId: number }[]>`
    select id, creator_id as "creatorId" from attendance_sheets where public_id = ${publicId}`
  return sheet
}

/** Opens or closes the sheet if the user created it. `isActive` null: not the creator, nothing changed. */
export async function setSheetStatus (sql: Sql, publicId: string, userId: number, active: boolean) {
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
export async function listStudents (sql: Sql, publicId: string, userId: number): Promise<(SheetAccess & { students: Student[] }) | undefined> {
  const rows = await sql<{ creatorId: number, nmec: number | null, name: string | null, timestamp: Date | null }[]>`
    select s.creator_id as "creatorId", r.nmec, r.name, r.registered_at as timestamp
      from attendance_sheets s
      left join registrations r on r.sheet_id = s.id and s.creator_id = ${userId}
     where s.public_id = ${publicId}
     order by r.registered_at, r.nmec`
  if (rows.length === 0) return undefined
  const students = rows.filter((row) => row.nmec !== null) as Student[]
  return { creatorId: rows[0].creatorId, students }
}

/** The same list as rows from a cursor, for a download of any size. */
export function studentsCursor (sql: Sql, sheetId: number, rowsPerBatch = 500) {
  return sql<Student[]>`
    select nmec, name, registered_at as timestamp
      from registrations
     where sheet_id = ${sheetId}
     order by registered_at, nmec`.cursor(rowsPerBatch)
}

export type SignInResult =
  | { outcome: 'registered', student: Student }
  | { outcome: 'unknown-sheet' | 'closed' | 'duplicate' }

/**
 * Signs a student in, in one statement. The sheet row is read FOR SHARE, so a racing close either
 * commits first (and the WHERE sees the sheet closed) or waits until this registration has committed:
 * no registration lands on a sheet after its close was answered. A repeat nmec conflicts on the key
 * and changes nothing, also when both arrive at once on different replicas.
 */
export async function signIn (sql: Sql, publicId: string, caller: number | null, nmec: number, name: string): Promise<SignInResult> {
  const [row] = await sql<{ isActive: boolean, isCreator: boolean, nmec: number | null, name: string | null, timestamp: Date | null }[]>`
    with sheet as (
      select id, is_active, creator_id = ${caller} as is_creator
        from attendance_sheets where public_id = ${publicId}
         for share
    ), inserted as (
      insert into registrations (sheet_id, nmec, name, added_by)
      select id, ${nmec}, ${name}, case when is_creator then ${caller}::integer end from sheet
       where is_active or is_creator
      on conflict (sheet_id, nmec) do nothing
      returning nmec, name, registered_at
    )
    select sheet.is_active as "isActive", coalesce(sheet.is_creator, false) as "isCreator",
           inserted.nmec, inserted.name, inserted.registered_at as timestamp
      from sheet left join inserted on true`
  if (!row) return { outcome: 'unknown-sheet' }
  if (row.nmec !== null) return { outcome: 'registered', student: { nmec: row.nmec, name: row.name!, timestamp: row.timestamp! } }
  if (!row.isActive && !row.isCreator) return { outcome: 'closed' }
  return { outcome: 'duplicate' }
}

/** Removes the listed students if the user created the sheet; unknown numbers are ignored. */
export async function removeStudents (sql: Sql, publicId: string, userId: number, nmecs: number[]) {
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
