import type { Static } from 'typebox'
import type { User as UserSchema } from '../../src/modules/accounts/schema.js'
import type {
  CourseSheets,
  CourseUnit as CourseUnitSchema,
  Department as DepartmentSchema,
  Sheet as SheetSchema,
  Student
} from '../../src/modules/attendance/schema.js'

/** The JSON API on this origin. The session rides in the HttpOnly cookie; no token is ever visible to scripts. */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: string[] = []
  ) {
    super(message)
  }

  /** What to show a person: each invalid field, or the server's message. */
  get lines(): string[] {
    return this.details.length > 0 ? this.details : [this.message]
  }
}

// The API's own schemas: a field renamed there fails the page's type check, not a person's browser.
export type User = Static<typeof UserSchema>
export type Department = Static<typeof DepartmentSchema>
export type CourseUnit = Static<typeof CourseUnitSchema>
export type Sheet = Static<typeof SheetSchema>
export type SheetSummary = Static<typeof CourseSheets>['attendances'][number]
export type Registration = Static<typeof Student>

interface Options {
  body?: unknown
  /** A 401 sends the person to the login page (the default), or is thrown like any other error. */
  loginOn401?: boolean
}

/**
 * Logs in, then checks that the browser kept the session cookie: a cookie it refuses (one marked
 * Secure on a page opened over plain HTTP) would otherwise send the person back to an empty login
 * form, again and again, with no word of why.
 */
export async function logIn(credentials: { email: string; password: string }): Promise<void> {
  await api('POST', '/api/sessions', { body: credentials, loginOn401: false })
  try {
    await api('GET', '/api/sessions', { loginOn401: false })
  } catch (error) {
    if ((error as ApiError).status !== 401) throw error
    throw new ApiError(
      0,
      'cookie-refused',
      location.protocol === 'http:'
        ? 'You are logged in, but this browser refused the session cookie: the server marks it Secure and this page was opened over plain HTTP. Open it with https://, or ask the administrator to set COOKIE_SECURE=auto.'
        : 'You are logged in, but this browser refused the session cookie. Allow cookies for this site and try again.'
    )
  }
}

export function loginUrl(): string {
  const next = location.pathname + location.search
  return next === '/' || next.endsWith('/login.html') ? 'login.html' : `login.html?next=${encodeURIComponent(next)}`
}

export async function api<T>(method: string, path: string, { body, loginOn401 = true }: Options = {}): Promise<T> {
  const init: RequestInit = { method, credentials: 'same-origin', headers: { accept: 'application/json' } }
  if (body !== undefined) {
    init.body = JSON.stringify(body)
    init.headers = { ...init.headers, 'content-type': 'application/json' }
  }
  let response: Response
  try {
    response = await fetch(path, init)
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection and try again.')
  }
  if (response.status === 401 && loginOn401) {
    location.assign(loginUrl())
    // The page is going away; nothing after this call should run.
    return new Promise<T>(() => {})
  }
  if (response.status === 204) return undefined as T
  const data: unknown = await response.json().catch(() => null)
  if (response.ok) return data as T
  throw toError(response.status, data)
}

function toError(status: number, data: unknown): ApiError {
  const body = (typeof data === 'object' && data !== null ? data : {}) as {
    error?: unknown
    message?: unknown
    details?: unknown
  }
  const message =
    typeof body.message === 'string' && body.message !== '' ? body.message : `The server answered ${status}.`
  const details = Array.isArray(body.details)
    ? body.details.filter((line): line is string => typeof line === 'string')
    : []
  return new ApiError(
    status,
    typeof body.error === 'string' ? body.error : 'error',
    sentence(message),
    details.map(sentence)
  )
}

/** Server messages are lower-case fragments ("attendance sheet not found"); shown alone they read better as sentences. */
function sentence(text: string): string {
  const trimmed = text.trim()
  if (trimmed === '') return trimmed
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1)
  return /[.!?]$/.test(capital) ? capital : `${capital}.`
}

export const sheetPath = (id: string) => `/api/attendance/sheet/${encodeURIComponent(id)}`
