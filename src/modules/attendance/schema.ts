import { Type, type Static } from 'typebox'
import { TrimmedText } from '../../platform/validation.js'

/** The characters of a public sheet id: digits 2–9, A–Z without I and O, a–z without l. */
export const publicIdAlphabet = '23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
const publicIdPattern = new RegExp(`^[${publicIdAlphabet}]{6}$`)

/** Anything else in the URL cannot be a sheet: 404 without asking the database. */
export const isPublicId = (id: string) => publicIdPattern.test(id)

// Any text: a malformed sheet id is as unknown as an unused one (404, not 422).
export const SheetParams = Type.Object({
  id: Type.String({ description: 'the public id: 6 characters of ' + publicIdAlphabet })
})

// Digits only ("1e3" is not an id, however a number parser reads it); past the int4 range it names nothing.
const IdText = Type.String({ pattern: '^-?[0-9]{1,20}$' })
export const DepartmentParams = Type.Object({ id: IdText })
export const CourseParams = Type.Object({ courseId: IdText })

const Int4 = Type.Integer({ minimum: -2147483648, maximum: 2147483647 })
const Nmec = Type.Integer({ minimum: 1, maximum: 99999999, description: 'student number' })
const Timestamp = Type.String({ format: 'date-time' })

export const Department = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  initials: Type.String()
})

export const CourseUnit = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  department: Type.Integer({ description: 'the department id' })
})

export const NewSheet = Type.Object({
  courseUnit: Int4,
  summary: Type.Optional(TrimmedText({ min: 1, max: 50, upperCase: true }))
})
export type NewSheet = Static<typeof NewSheet>

export const CreatedSheet = Type.Object({
  attendanceId: Type.String()
})

export const Sheet = Type.Object({
  id: Type.String(),
  timestamp: Timestamp,
  courseUnit: Type.Integer(),
  courseUnitName: Type.String(),
  creatorName: Type.String({ description: '"First Last"' }),
  summary: Type.Union([Type.String(), Type.Null()]),
  isActive: Type.Boolean(),
  signInUrl: Type.String({
    description: "where students sign in: PUBLIC_URL, or this request's origin, + /reg.html?id=…"
  })
})

export const CourseSheets = Type.Object({
  courseUnit: Type.Integer(),
  attendances: Type.Array(
    Type.Object({
      id: Type.String(),
      registerTimestamp: Timestamp,
      summary: Type.Union([Type.String(), Type.Null()]),
      isActive: Type.Boolean()
    })
  )
})

export const StatusChange = Type.Object({
  status: Type.Boolean({ description: 'true: open, false: closed' })
})

export const Status = Type.Object({
  isActive: Type.Boolean()
})

export const SignIn = Type.Object({
  nmec: Nmec,
  name: TrimmedText({ min: 5, max: 100 })
})

export const Student = Type.Object({
  nmec: Type.Integer(),
  name: Type.String(),
  timestamp: Type.String({ format: 'date-time', description: 'when the student signed in on this sheet' })
})

export const Removal = Type.Object({
  nmecs: Type.Array(Nmec, { maxItems: 10_000 })
})

export const Removed = Type.Object({
  removed: Type.Integer({ description: 'how many of the students were on the sheet and are no longer' })
})
