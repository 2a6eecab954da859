/**
 * One generator per route. A write is generated so that the contract refuses it whatever the server
 * does with the rest: one field out of bounds, a body that is not a JSON object, credentials that do
 * not count, or a target the caller may not touch. A 2xx to any of them is a finding, and so is any
 * change they leave in the database. Reads may answer anything but a 5xx.
 */
import type { Case, Context, Expectation, HttpCase } from './cases.js'
import {
  anyAuth,
  brokenBody,
  crossSite,
  deadAuth,
  doubtfulTypes,
  headerNoise,
  illFormedText,
  injections,
  integersOutside,
  keyTricks,
  noiseText,
  nonJsonTypes,
  notAnInteger,
  notAString,
  nulText,
  numericIdTricks,
  otherBearer,
  raw,
  sheetIdTricks,
  teacherBearer,
  toJson,
  withQuery,
  type Auth
} from './hostile.js'
import type { Random } from './random.js'
import { rawCase } from './raw.js'

export interface RouteSpec {
  family: string
  route: string
  /** Share of the cases. */
  weight: number
  build(rng: Random, ctx: Context, index: number): Case
}

const remove = Symbol('remove the field')
type FieldValue = { what: string; value: unknown }
type FieldMutation = (rng: Random, ctx: Context) => FieldValue

const as =
  (what: string) =>
  (value: unknown): FieldValue => ({ what, value })
const pickValue =
  (what: string, values: readonly unknown[]): FieldMutation =>
  (rng) =>
    as(what)(rng.pick(values))
const describe = (value: unknown) => {
  if (value === remove) return 'missing'
  const text = toJson(value)
  return text.length > 40 ? `${text.slice(0, 40)}… (${text.length} chars)` : text
}

// ---------------------------------------------------------------------------------------------------
// Field mutations that make a body invalid on their own

/** Invalid values for a required or optional text field of `min`..`max` characters (trimmed when `trimmed`). */
function invalidText(min: number, max: number, { required = true, trimmed = false } = {}): FieldMutation {
  return (rng) =>
    rng.weighted<() => FieldValue>([
      [3, () => illFormedText(rng, min, max)],
      [2, () => nulText(rng, min, max)],
      [min > 0 ? 1 : 0, () => as('empty')('')],
      [min > 1 ? 1 : 0, () => as('too short')('x'.repeat(min - 1))],
      [
        2,
        () =>
          as('too long')(
            rng.pick([
              'x'.repeat(max + 1),
              'é'.repeat(max + 1),
              '😀'.repeat(max + 1),
              'e\u0301'.repeat(Math.ceil((max + 1) / 2)),
              'y'.repeat(rng.int(max + 1, 20_000))
            ])
          )
      ],
      [1, () => as('long injection')(`${rng.pick(injections)}${'-'.repeat(max + 1)}`)],
      [
        trimmed ? 2 : 0,
        () => as('blank once trimmed')(rng.pick([' ', '   ', '\t\n', '\u00a0\u2003\u3000', '\ufeff ', ' \r\n ']))
      ],
      [trimmed ? 1 : 0, () => as('too short once trimmed')(`   ${'x'.repeat(Math.max(0, min - 1))}   `)],
      [trimmed ? 1 : 0, () => as('too long once trimmed')(` ${'x'.repeat(max + 1)} `)],
      [2, () => as('not a string')(rng.pick(required ? notAString : notAString.filter((value) => value !== null)))],
      [required ? 1 : 0, () => as('missing')(remove)]
    ])()
}

function invalidInteger(min: number, max: number, { extra = [] as unknown[], required = true } = {}): FieldMutation {
  return (rng) =>
    rng.weighted<() => FieldValue>([
      [3, () => as('integer out of range')(rng.pick([...integersOutside(min, max), ...extra]))],
      [3, () => as('not an integer')(rng.pick(notAnInteger))],
      [required ? 1 : 0, () => as('missing')(remove)]
    ])()
}

// ---------------------------------------------------------------------------------------------------
// Writes

interface Refusal {
  what: string
  path?: string
  headers?: Record<string, string>
  body?: Record<string, unknown>
}

interface WriteRoute {
  family: string
  route: string
  method: string
  weight: number
  /** Where a valid request goes, and with which credentials. */
  target(rng: Random, ctx: Context): { path: string; headers: Record<string, string> }
  /** A valid body: were it ever accepted from a hostile case, the state check would see it. */
  valid(rng: Random, ctx: Context, index: number): Record<string, unknown>
  fields: Record<string, FieldMutation>
  /** Sessions decide (401/403 before the body): dead credentials with a valid body must be refused. */
  authenticated: boolean
  /** Every field optional: `{}` is a valid body. */
  allOptional?: boolean
  /** Valid bodies the route must still refuse: unknown or foreign targets, limits, duplicates. */
  refusals?: Array<readonly [number, (rng: Random, ctx: Context, index: number) => Refusal]>
  /** How often the refusals are drawn (out of about 20): low where each costs a password hash. */
  refusalWeight?: number
  /** Paths that name nothing this route may act on. */
  badPaths?(rng: Random, ctx: Context): string[]
}

function mutate(
  rng: Random,
  ctx: Context,
  body: Record<string, unknown>,
  fields: Record<string, FieldMutation>,
  count: number
) {
  const mutated = { ...body }
  const whats: string[] = []
  let replacedOnly = true
  for (const field of pickDistinct(rng, Object.keys(fields), count)) {
    const { what, value } = fields[field](rng, ctx)
    if (value === remove) {
      delete mutated[field]
      replacedOnly = false
    } else mutated[field] = value
    whats.push(`${field}: ${what} ${describe(value)}`)
  }
  // Fields the schema does not know are dropped: they must neither rescue nor break anything.
  if (rng.chance(0.15))
    Object.assign(
      mutated,
      rng.pick([
        { role: 'admin' },
        { userId: ctx.other.userId },
        { creatorId: ctx.other.userId, isActive: true },
        { __fuzz: noiseText(rng) }
      ])
    )
  return { body: mutated, what: whats.join('; '), replacedOnly }
}

function pickDistinct<T>(rng: Random, items: T[], count: number): T[] {
  const pool = [...items]
  const picked: T[] = []
  while (picked.length < Math.min(count, items.length)) picked.push(pool.splice(rng.int(0, pool.length - 1), 1)[0])
  return picked
}

function writeCase(spec: WriteRoute, rng: Random, ctx: Context, index: number): HttpCase {
  const { path, headers } = spec.target(rng, ctx)
  const valid = spec.valid(rng, ctx, index)
  const validText = toJson(valid)
  const base = {
    kind: 'http' as const,
    family: spec.family,
    route: spec.route,
    method: spec.method,
    expect: 'refused' as Expectation
  }
  const json = { 'content-type': 'application/json' }
  const strategy = rng.weighted([
    [6, 'field'],
    [1, 'fields'],
    [2, 'type'],
    [3, 'broken'],
    [2, 'content-type'],
    [spec.authenticated ? 3 : 0, 'auth'],
    [spec.refusals ? (spec.refusalWeight ?? 3) : 0, 'refusal'],
    [spec.badPaths ? 2 : 0, 'path']
  ] as const)
  let made: Omit<HttpCase, 'kind' | 'family' | 'route' | 'method' | 'expect'>
  switch (strategy) {
    case 'field':
    case 'fields': {
      const { body, what } = mutate(rng, ctx, valid, spec.fields, strategy === 'field' ? 1 : 2)
      made = { what, path, headers: { ...headers, ...json }, body: toJson(body) }
      break
    }
    case 'type': {
      const bodies = [
        null,
        [],
        [valid],
        1,
        0,
        -1,
        'text',
        '',
        true,
        false,
        raw('1e400'),
        ...(spec.allOptional ? [] : [{}, { data: valid }])
      ]
      const body = rng.pick(bodies)
      made = { what: `body is ${describe(body)}`, path, headers: { ...headers, ...json }, body: toJson(body) }
      break
    }
    case 'broken': {
      const { body: invalid, replacedOnly } = mutate(rng, ctx, valid, spec.fields, 1)
      const broken = brokenBody(rng, validText, toJson(invalid), replacedOnly)
      made = { what: broken.what, path, headers: { ...headers, ...json, ...broken.headers }, body: broken.body }
      break
    }
    case 'content-type': {
      if (rng.chance(0.6)) {
        const type = rng.pick(nonJsonTypes)
        made = {
          what: `valid JSON as ${type}`,
          path,
          headers: { ...headers, 'content-type': type },
          body: bodyAs(type, valid, validText)
        }
      } else {
        const { body: invalid, what } = mutate(rng, ctx, valid, spec.fields, 1)
        const type = rng.pick(doubtfulTypes)
        made = {
          what: `content-type ${describe(type)}, ${what}`,
          path,
          headers: { ...headers, ...(type === null ? {} : { 'content-type': type }) },
          body: toJson(invalid)
        }
      }
      break
    }
    case 'auth': {
      const auth = deadAuth(rng, ctx)
      made = { what: auth.what, path, headers: { ...auth.headers, ...json }, body: validText }
      break
    }
    case 'refusal': {
      const refusal = rng.weighted(spec.refusals!)(rng, ctx, index)
      made = {
        what: refusal.what,
        path: refusal.path ?? path,
        headers: { ...(refusal.headers ?? headers), ...json },
        body: toJson(refusal.body ?? valid)
      }
      break
    }
    case 'path': {
      const bad = rng.pick(spec.badPaths!(rng, ctx))
      made = { what: 'path names nothing', path: bad, headers: { ...headers, ...json }, body: validText }
      break
    }
  }
  return withNoise(rng, { ...base, ...made })
}

/** A valid body in another encoding, as a browser form or a non-JSON client would send it. */
function bodyAs(type: string, valid: Record<string, unknown>, validText: string): string {
  const entries = Object.entries(valid).map(([key, value]): [string, string] => [
    key,
    typeof value === 'string' ? value : JSON.stringify(value)
  ])
  if (type === 'application/x-www-form-urlencoded') return new URLSearchParams(entries).toString()
  if (type.startsWith('multipart/form-data')) {
    return (
      entries
        .map(([key, value]) => `--fuzz\r\nContent-Disposition: form-data; name="${key}"\r\n\r\n${value}\r\n`)
        .join('') + '--fuzz--\r\n'
    )
  }
  if (type.includes('xml'))
    return `<?xml version="1.0"?><body>${entries.map(([key, value]) => `<${key}>${value}</${key}>`).join('')}</body>`
  return validText
}

/** Noise that changes nothing about why the request is refused (never credentials, Content-Type or Host). */
function withNoise(rng: Random, made: HttpCase): HttpCase {
  const whats = [made.what]
  let { path, headers } = made
  if (rng.chance(0.3)) {
    const noise = headerNoise(rng)
    headers = { ...noise.headers, ...headers }
    whats.push(noise.what)
  }
  const query = withQuery(rng, path, 0.1)
  if (query.what) {
    path = query.path
    whats.push(query.what)
  }
  return { ...made, path, headers, what: whats.join('; ') }
}

const clients = [1, 2, 3, 4, 5]
const fresh = (index: number) => `fuzz-${index}`

const transactions: WriteRoute = {
  family: 'crebitos',
  route: 'POST /clientes/:id/transacoes',
  method: 'POST',
  weight: 14,
  target: (rng) => ({ path: `/clientes/${rng.pick(clients)}/transacoes`, headers: {} }),
  valid: (rng, _ctx, index) => ({
    valor: rng.int(1, 1000),
    tipo: rng.pick(['c', 'd']),
    descricao: `f${index}`.slice(0, 10)
  }),
  fields: {
    valor: invalidInteger(1, 2147483647),
    tipo: pickValue('not c or d', [
      'C',
      'D',
      'x',
      '',
      'cd',
      'c ',
      ' d',
      'credit',
      null,
      1,
      true,
      ['c'],
      {},
      'c\u0000',
      '\ud800',
      'ｃ',
      remove
    ]),
    descricao: invalidText(1, 10)
  },
  authenticated: false,
  refusals: [
    [
      2,
      (rng) => ({
        what: 'unknown client',
        path: `/clientes/${rng.pick(['6', '7', '1000', '2147483647', '2147483648', '9999999999'])}/transacoes`
      })
    ],
    [
      2,
      (rng) => ({
        what: 'debit past the limit',
        body: { valor: 2147483647, tipo: 'd', descricao: rng.pick(['past', 'limit', 'x']) }
      })
    ]
  ],
  badPaths: () => [
    ...numericIdTricks.map((id) => `/clientes/${id}/transacoes`),
    '/clientes//transacoes',
    '/clientes/1/2/transacoes',
    '/clientes/1/transacoes%00',
    '/clientes/1/transacoes/..',
    '/clientes/1%2Ftransacoes',
    '/clientes/1/transacoes;x=1',
    '/clientes/1/../6/transacoes',
    '/clientes/%2e%2e/transacoes'
  ]
}

const increment: WriteRoute = {
  family: 'increments',
  route: 'POST /increment',
  method: 'POST',
  weight: 7,
  target: (_rng, ctx) => ({ path: '/increment', headers: teacherBearer(ctx) }),
  valid: (rng, _ctx, index) => ({ key: fresh(index), value: rng.int(1, 100) }),
  fields: {
    key: invalidText(1, 200),
    value: invalidInteger(-2147483648, 2147483647, { extra: [raw('0'), raw('-0'), raw('0.0'), raw('0e5')] })
  },
  authenticated: true
}

const nameField = invalidText(1, 100, { required: false, trimmed: true })

const register: WriteRoute = {
  family: 'accounts',
  route: 'POST /api/users',
  method: 'POST',
  weight: 6,
  target: () => ({ path: '/api/users', headers: {} }),
  valid: (_rng, _ctx, index) => ({
    email: `${fresh(index)}@example.com`,
    password: 'correct horse battery',
    firstName: 'Fuzz',
    lastName: `Case ${index}`
  }),
  fields: {
    email: (rng) =>
      rng.weighted<() => FieldValue>([
        [
          4,
          () =>
            as('not an email')(
              rng.pick([
                '',
                'plainaddress',
                'a@',
                '@example.com',
                'a b@example.com',
                'a@b@example.com',
                "' OR 1=1 --",
                'a\u0000@example.com',
                '\ud800@example.com',
                'a@exa mple.com',
                '@',
                'a@\u0000',
                '<script>alert(1)</script>'
              ])
            )
        ],
        [1, () => as('over 254 characters')(`${'x'.repeat(250)}@example.com`)],
        [2, () => as('not a string')(rng.pick(notAString))],
        [1, () => as('missing')(remove)]
      ])(),
    password: (rng) =>
      rng.weighted<() => FieldValue>([
        [2, () => as('under 8 characters')(rng.pick(['', '1234567', 'short']))],
        [1, () => as('over 1024 characters')('x'.repeat(1025))],
        [3, () => illFormedText(rng, 8, 30)],
        [2, () => as('not a string')(rng.pick(notAString))],
        [1, () => as('missing')(remove)]
      ])(),
    firstName: nameField,
    lastName: nameField
  },
  authenticated: false,
  refusals: [
    // Each costs a password hash: few of them.
    [
      1,
      (_rng, ctx) => ({
        what: 'email taken (other letter case)',
        body: { email: ctx.teacher.email.toUpperCase(), password: 'correct horse battery' }
      })
    ]
  ],
  refusalWeight: 0.3
}

const login: WriteRoute = {
  family: 'accounts',
  route: 'POST /api/sessions',
  method: 'POST',
  weight: 4,
  target: () => ({ path: '/api/sessions', headers: {} }),
  // The right credentials: every strategy below breaks them, so no case ever logs in.
  valid: (_rng, ctx) => ({ email: ctx.teacher.email, password: ctx.teacher.password }),
  fields: {
    email: (rng) =>
      rng.weighted<() => FieldValue>([
        [
          3,
          () =>
            as('not an email')(
              rng.pick(['', 'plainaddress', 'a@', "' OR 1=1 --", 'a b@example.com', '\ud800@example.com'])
            )
        ],
        [2, () => as('not a string')(rng.pick(notAString))],
        [1, () => as('missing')(remove)]
      ])(),
    password: (rng) =>
      rng.weighted<() => FieldValue>([
        [2, () => as('under 8 characters')(rng.pick(['', '1234567']))],
        [1, () => as('over 1024 characters')('x'.repeat(1025))],
        [2, () => as('not a string')(rng.pick(notAString))],
        [1, () => as('missing')(remove)]
      ])()
  },
  authenticated: false,
  refusals: [
    [
      2,
      (rng, ctx) => ({
        what: 'wrong password',
        body: {
          email: rng.pick([ctx.teacher.email, ctx.teacher.email.toUpperCase()]),
          password: `wrong ${noiseText(rng)}`
        }
      })
    ],
    [
      1,
      (rng) => ({
        what: 'unknown email',
        body: { email: `nobody-${rng.int(1, 1e9)}@example.com`, password: 'correct horse battery' }
      })
    ],
    [
      1,
      (rng, ctx) => ({
        what: 'ill-formed Unicode password',
        body: { email: ctx.teacher.email, password: illFormedText(rng, 8, 20).value }
      })
    ]
  ],
  refusalWeight: 0.5
}

const profile: WriteRoute = {
  family: 'accounts',
  route: 'PATCH /api/users/me',
  method: 'PATCH',
  weight: 4,
  target: (_rng, ctx) => ({ path: '/api/users/me', headers: teacherBearer(ctx) }),
  valid: (_rng, _ctx, index) => ({ firstName: 'Mallory', lastName: `Case ${index}` }),
  fields: { firstName: nameField, lastName: nameField },
  authenticated: true,
  allOptional: true
}

const password: WriteRoute = {
  family: 'accounts',
  route: 'PUT /api/users/me/password',
  method: 'PUT',
  weight: 4,
  target: (_rng, ctx) => ({
    path: '/api/users/me/password',
    headers: { authorization: `Bearer ${ctx.passwordUser.token}` }
  }),
  valid: (_rng, ctx) => ({ currentPassword: ctx.passwordUser.password, newPassword: 'a new password 12345' }),
  fields: {
    newPassword: (rng) =>
      rng.weighted<() => FieldValue>([
        [2, () => as('under 8 characters')(rng.pick(['', '1234567']))],
        [1, () => as('over 1024 characters')('x'.repeat(1025))],
        [3, () => illFormedText(rng, 8, 30)],
        [2, () => as('not a string')(rng.pick(notAString))],
        [1, () => as('missing')(remove)]
      ])(),
    currentPassword: (rng) =>
      rng.weighted<() => FieldValue>([
        [1, () => as('empty')('')],
        [1, () => as('over 1024 characters')('x'.repeat(1025))],
        [2, () => as('not a string')(rng.pick(notAString))],
        [1, () => as('missing')(remove)]
      ])()
  },
  authenticated: true,
  refusals: [
    // A verification costs a password hash: few of them.
    [
      1,
      (rng) => ({
        what: 'wrong current password',
        body: { currentPassword: `wrong ${noiseText(rng)}`, newPassword: 'a new password 12345' }
      })
    ]
  ],
  refusalWeight: 0.3
}

const newSheet: WriteRoute = {
  family: 'attendance',
  route: 'POST /api/attendance/sheet/new',
  method: 'POST',
  weight: 5,
  target: (_rng, ctx) => ({ path: '/api/attendance/sheet/new', headers: teacherBearer(ctx) }),
  valid: (rng, _ctx, index) => ({ courseUnit: rng.int(0, 3), summary: `F${index}` }),
  fields: {
    courseUnit: invalidInteger(-2147483648, 2147483647),
    summary: (rng, ctx) =>
      rng.chance(0.2)
        ? as('longer than 50 once upper-cased')(rng.pick(['ß'.repeat(26), 'ﬃ'.repeat(17), 'ŉ'.repeat(26)]))
        : invalidText(1, 50, { required: false, trimmed: true })(rng, ctx)
  },
  authenticated: true,
  refusals: [
    [
      1,
      (rng) => ({
        what: 'unknown course unit',
        body: { courseUnit: rng.pick([4, 5, 9999, -1, 2147483647, -2147483648]), summary: 'TP1' }
      })
    ]
  ]
}

/** A body that would flip the sheet, so that a wrongly accepted one shows in the state. */
const flip = (ctx: Context, sheet: string) => ({
  status: sheet === ctx.sheets.closed || sheet === ctx.sheets.otherClosed
})

const status: WriteRoute = {
  family: 'attendance',
  route: 'POST /api/attendance/sheet/:id/status',
  method: 'POST',
  weight: 4,
  // Closing the open sheet: a valid body that changes something, should a hostile case ever get it through.
  target: (_rng, ctx) => ({ path: `/api/attendance/sheet/${ctx.sheets.open}/status`, headers: teacherBearer(ctx) }),
  valid: () => ({ status: false }),
  fields: {
    status: pickValue('not a boolean', [
      'maybe',
      'true',
      'false',
      1,
      0,
      null,
      [],
      {},
      [true],
      'TRUE',
      raw('1.0'),
      '',
      'yes',
      remove
    ])
  },
  authenticated: true,
  refusals: [
    [
      2,
      (rng, ctx) => {
        const sheet = rng.pick([ctx.sheets.open, ctx.sheets.closed])
        return {
          what: "another teacher on the teacher's sheet",
          path: `/api/attendance/sheet/${sheet}/status`,
          headers: otherBearer(ctx),
          body: flip(ctx, sheet)
        }
      }
    ],
    [
      1,
      (rng, ctx) => {
        const sheet = rng.pick([ctx.sheets.otherOpen, ctx.sheets.otherClosed])
        return {
          what: "the teacher on another teacher's sheet",
          path: `/api/attendance/sheet/${sheet}/status`,
          body: flip(ctx, sheet)
        }
      }
    ],
    [
      1,
      (rng, ctx) => ({
        what: 'unknown sheet',
        path: `/api/attendance/sheet/${rng.pick(sheetIdTricks(rng, ctx.sheets.open))}/status`,
        body: { status: true }
      })
    ]
  ],
  badPaths: (rng, ctx) => sheetIdTricks(rng, ctx.sheets.open).map((id) => `/api/attendance/sheet/${id}/status`)
}

const signIn: WriteRoute = {
  family: 'attendance',
  route: 'POST /api/attendance/sheet/:id/student/registration',
  method: 'POST',
  weight: 9,
  // Sessions are optional here: anyone may sign in on an open sheet, so credentials refuse nothing.
  target: (rng, ctx) => ({
    path: `/api/attendance/sheet/${ctx.sheets.open}/student/registration`,
    headers: rng.chance(0.3) ? anyAuth(rng, ctx).headers : {}
  }),
  valid: (_rng, _ctx, index) => ({ nmec: 50_000_000 + index, name: `Fuzz Student ${index}` }),
  fields: {
    nmec: invalidInteger(1, 99999999),
    name: invalidText(5, 100, { trimmed: true })
  },
  authenticated: false,
  refusals: [
    [
      2,
      (rng, ctx) => ({
        what: 'closed sheet, anonymous',
        path: `/api/attendance/sheet/${ctx.sheets.closed}/student/registration`,
        headers: rng.chance(0.5) ? {} : deadAuth(rng, ctx).headers
      })
    ],
    [
      1,
      (_rng, ctx) => ({
        what: "another teacher on the teacher's closed sheet",
        path: `/api/attendance/sheet/${ctx.sheets.closed}/student/registration`,
        headers: otherBearer(ctx)
      })
    ],
    [
      1,
      (_rng, ctx) => ({
        what: "the teacher on another teacher's closed sheet",
        path: `/api/attendance/sheet/${ctx.sheets.otherClosed}/student/registration`,
        headers: teacherBearer(ctx)
      })
    ],
    [
      1,
      (rng, ctx) => {
        const auth: Auth = crossSite(rng, ctx.teacher.token)
        return {
          what: `creator on the closed sheet by ${auth.what} (anonymous)`,
          path: `/api/attendance/sheet/${ctx.sheets.closed}/student/registration`,
          headers: auth.headers
        }
      }
    ],
    [
      2,
      (rng, ctx) => ({
        what: 'student number already signed in',
        body: { nmec: rng.pick(ctx.signedIn), name: `Someone Else ${rng.int(1, 999)}` }
      })
    ],
    [
      2,
      (rng, ctx) => ({
        what: 'unknown sheet',
        path: `/api/attendance/sheet/${rng.pick(sheetIdTricks(rng, ctx.sheets.open))}/student/registration`
      })
    ]
  ]
}

const removal: WriteRoute = {
  family: 'attendance',
  route: 'DELETE /api/attendance/sheet/:id/student/deletion',
  method: 'DELETE',
  weight: 5,
  target: (_rng, ctx) => ({
    path: `/api/attendance/sheet/${ctx.sheets.open}/student/deletion`,
    headers: teacherBearer(ctx)
  }),
  valid: (rng, ctx) => ({ nmecs: pickDistinct(rng, ctx.signedIn, rng.int(1, 3)) }),
  fields: {
    nmecs: (rng, ctx) =>
      rng.weighted<() => FieldValue>([
        [
          4,
          () =>
            as('not a list of student numbers')(
              rng.pick([
                'x',
                null,
                1,
                {},
                [0],
                [-1],
                [raw('1.5')],
                ['12345'],
                [null],
                [[1]],
                [100000000],
                [true],
                [raw('9007199254740993')],
                { 0: ctx.signedIn[0] }
              ])
            )
        ],
        [
          2,
          () =>
            as('a valid number and an invalid one')([
              ...ctx.signedIn.slice(0, 2),
              rng.pick([0, -5, '1', null, 100000000])
            ])
        ],
        [1, () => as('more than 10000 numbers')(Array.from({ length: 10_001 }, (_, i) => (i % 9) + 1))],
        [1, () => as('missing')(remove)]
      ])()
  },
  authenticated: true,
  refusals: [
    [
      2,
      (_rng, ctx) => ({
        what: "another teacher on the teacher's sheet",
        headers: otherBearer(ctx),
        body: { nmecs: ctx.signedIn }
      })
    ],
    [
      1,
      (rng, ctx) => ({
        what: 'unknown sheet',
        path: `/api/attendance/sheet/${rng.pick(sheetIdTricks(rng, ctx.sheets.open))}/student/deletion`
      })
    ]
  ]
}

const logout = (rng: Random, ctx: Context): HttpCase => {
  // A live session here would log out for real: only dead or cross-site credentials, with or without a body.
  const auth = deadAuth(rng, ctx)
  const withBody = rng.chance(0.3)
  return withNoise(rng, {
    kind: 'http',
    family: 'accounts',
    route: 'DELETE /api/sessions',
    method: 'DELETE',
    path: '/api/sessions',
    expect: 'refused',
    what: `${auth.what}${withBody ? '; with a body' : ''}`,
    headers: { ...auth.headers, ...(withBody ? { 'content-type': rng.pick(['application/json', 'text/plain']) } : {}) },
    body: withBody ? rng.pick(['{}', '{"all":true}', '{', 'x'.repeat(100_000)]) : undefined
  })
}

// ---------------------------------------------------------------------------------------------------
// Reads

interface ReadRoute {
  family: string
  route: string
  weight: number
  paths(rng: Random, ctx: Context): string[]
  /** The route's own paths, drawn half the time: the hostile headers and queries must reach the handler too. */
  valid?(ctx: Context): string[]
  /** `any`: live or dead credentials; `none`: no session involved. */
  auth: 'any' | 'none' | ((rng: Random, ctx: Context) => Auth)
  expect?: Expectation
  noLeak?: boolean
}

function readCase(spec: ReadRoute, rng: Random, ctx: Context): HttpCase {
  const whats: string[] = []
  const valid = spec.valid?.(ctx)
  let path = valid && rng.chance(0.5) ? rng.pick(valid) : rng.pick(spec.paths(rng, ctx))
  let headers: Record<string, string> = {}
  if (spec.auth !== 'none') {
    const auth = spec.auth === 'any' ? anyAuth(rng, ctx) : spec.auth(rng, ctx)
    headers = { ...auth.headers }
    whats.push(auth.what)
  }
  if (rng.chance(0.5)) {
    const noise = headerNoise(rng)
    headers = { ...noise.headers, ...headers }
    whats.push(noise.what)
  }
  if (rng.chance(0.05)) {
    headers.host = rng.pick([
      'evil.example',
      '',
      'x'.repeat(300),
      '127.0.0.1:99999',
      '[::1]',
      'a b',
      '<script>',
      '127.0.0.1:1@evil.example'
    ])
    whats.push(`Host ${describe(headers.host)}`)
  }
  const query = withQuery(rng, path, 0.2)
  if (query.what) {
    path = query.path
    whats.push(query.what)
  }
  return {
    kind: 'http',
    family: spec.family,
    route: spec.route,
    method: 'GET',
    path,
    headers,
    expect: spec.expect ?? 'any',
    what: whats.join('; ') || 'plain',
    noLeak: spec.noLeak
  }
}

const sheetIds = (rng: Random, ctx: Context) => [
  ctx.sheets.open,
  ctx.sheets.closed,
  ctx.sheets.otherOpen,
  ctx.sheets.otherClosed,
  ...sheetIdTricks(rng, ctx.sheets.open)
]
const creatorOrNot = (rng: Random, ctx: Context): Auth =>
  rng.weighted<() => Auth>([
    [3, () => ({ what: "the teacher's bearer token", headers: teacherBearer(ctx) })],
    [2, () => ({ what: "another teacher's bearer token", headers: otherBearer(ctx) })],
    [3, () => anyAuth(rng, ctx)]
  ])()
const ownSheets = (suffix: string) => (ctx: Context) =>
  [ctx.sheets.open, ctx.sheets.closed].map((id) => `/api/attendance/sheet/${id}${suffix}`)
const sheetPaths = (suffix: string) => (rng: Random, ctx: Context) =>
  sheetIds(rng, ctx).map((id) => `/api/attendance/sheet/${id}${suffix}`)

const reads: ReadRoute[] = [
  {
    family: 'crebitos',
    route: 'GET /clientes/:id/extrato',
    weight: 5,
    auth: 'none',
    valid: () => clients.map((id) => `/clientes/${id}/extrato`),
    paths: () => [
      ...clients.map((id) => `/clientes/${id}/extrato`),
      ...numericIdTricks.map((id) => `/clientes/${id}/extrato`),
      '/clientes/1/extrato/',
      '/Clientes/1/extrato',
      '/clientes/%31/extrato',
      '/clientes/1/extrato%00'
    ]
  },
  {
    family: 'counter',
    route: 'GET /counter',
    weight: 3,
    auth: 'any',
    valid: () => ['/counter'],
    paths: () => ['/counter', '/counter/', '/counter%00', '/COUNTER', '/counter/..']
  },
  {
    family: 'increments',
    route: 'GET /increment/:key',
    weight: 4,
    auth: 'none',
    valid: (ctx) => ctx.incrementKeys.map((key) => `/increment/${key}`),
    paths: (rng, ctx) =>
      [...ctx.incrementKeys, ...keyTricks, encodeURIComponent(noiseText(rng))].map((key) => `/increment/${key}`)
  },
  { family: 'accounts', route: 'GET /api/sessions', weight: 2, auth: 'any', paths: () => ['/api/sessions'] },
  {
    family: 'accounts',
    route: 'GET /api/users/me',
    weight: 3,
    auth: 'any',
    valid: () => ['/api/users/me'],
    paths: () => ['/api/users/me', '/api/users/me/', '/api/users/%6de']
  },
  {
    family: 'attendance',
    route: 'GET /api/department/all',
    weight: 1,
    auth: 'none',
    paths: () => ['/api/department/all']
  },
  {
    family: 'attendance',
    route: 'GET /api/department/:id/course_units',
    weight: 2,
    auth: 'none',
    valid: () => ['/api/department/4/course_units'],
    paths: () => ['4', '0', '5', ...numericIdTricks].map((id) => `/api/department/${id}/course_units`)
  },
  { family: 'attendance', route: 'GET /api/course_units', weight: 1, auth: 'none', paths: () => ['/api/course_units'] },
  {
    family: 'attendance',
    route: 'GET /api/course_units/my',
    weight: 1,
    auth: 'any',
    paths: () => ['/api/course_units/my']
  },
  {
    family: 'attendance',
    route: 'GET /api/attendance/sheet/:id',
    weight: 4,
    auth: 'any',
    paths: sheetPaths(''),
    valid: ownSheets('')
  },
  {
    family: 'attendance',
    route: 'GET /api/attendance/sheets/:courseId',
    weight: 3,
    auth: 'any',
    valid: () => ['0', '1', '2', '3'].map((id) => `/api/attendance/sheets/${id}`),
    paths: () => ['0', '1', '2', '3', '4', ...numericIdTricks].map((id) => `/api/attendance/sheets/${id}`)
  },
  {
    family: 'attendance',
    route: 'GET /api/attendance/sheet/:id/students',
    weight: 3,
    auth: creatorOrNot,
    paths: sheetPaths('/students'),
    valid: ownSheets('/students')
  },
  {
    family: 'attendance',
    route: 'GET /api/attendance/sheet/:id/students.csv',
    weight: 3,
    auth: creatorOrNot,
    paths: sheetPaths('/students.csv'),
    valid: ownSheets('/students.csv')
  },
  {
    family: 'attendance',
    route: 'GET /api/attendance/sheet/:id/events',
    weight: 2,
    auth: creatorOrNot,
    paths: sheetPaths('/events'),
    valid: ownSheets('/events'),
    expect: 'stream'
  },
  {
    family: 'platform',
    route: 'GET /health',
    weight: 1,
    auth: 'none',
    valid: () => ['/health'],
    paths: () => ['/health', '/health/', '/health%00', '/HEALTH']
  },
  {
    family: 'platform',
    route: 'GET /ready',
    weight: 1,
    auth: 'none',
    valid: () => ['/ready'],
    paths: () => ['/ready', '/ready/']
  },
  {
    family: 'platform',
    route: 'GET /metrics',
    weight: 1,
    auth: 'none',
    valid: () => ['/metrics'],
    paths: () => ['/metrics', '/metrics/', '/metrics.json']
  },
  {
    family: 'platform',
    route: 'GET /openapi.json',
    weight: 1,
    auth: 'none',
    valid: () => ['/openapi.json'],
    paths: () => ['/openapi.json', '/openapi.json/', '/openapi.yaml', '/openapi.json%00']
  },
  {
    family: 'platform',
    route: 'GET /documentation',
    weight: 2,
    auth: 'none',
    noLeak: true,
    valid: () => ['/documentation', '/documentation/', '/documentation/json', '/documentation/static/index.html'],
    paths: () => [
      '/documentation',
      '/documentation/',
      '/documentation/json',
      '/documentation/yaml',
      '/documentation/static/index.html',
      '/documentation/static/swagger-ui.css',
      '/documentation/static/swagger-ui-bundle.js',
      '/documentation/static/nope.js',
      '/documentation/static/',
      '/documentation/uiConfig',
      '/documentation/initOAuth',
      '/documentation/static/../../../package.json',
      '/documentation/static/%2e%2e/%2e%2e/%2e%2e/package.json',
      '/documentation/static/..%2f..%2f..%2fpackage.json',
      '/documentation/static/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fpackage.json',
      '/documentation/static/....//....//package.json',
      '/documentation/static/%00',
      '/documentation/static/index.html%00',
      '/documentation/../package.json',
      '/documentation/%2e%2e/package.json',
      '/documentation/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
      '/documentation/static/%c0%ae%c0%ae/%c0%ae%c0%ae/package.json',
      '/documentation/static/%252e%252e/%252e%252e/package.json',
      '/documentation/static/..%5c..%5c..%5cpackage.json',
      '/documentation/static/.%2e/.%2e/.%2e/package.json'
    ]
  },
  { family: 'static', route: 'GET (web UI files)', weight: 4, auth: 'none', paths: (_rng, ctx) => ctx.webFiles },
  {
    family: 'static',
    route: 'GET (web UI path tricks)',
    weight: 4,
    auth: 'none',
    noLeak: true,
    paths: (_rng, ctx) => {
      const asset = ctx.webFiles.find((file) => file.startsWith('/assets/')) ?? '/assets/x.js'
      return [
        '/../main.js',
        '/..%2fmain.js',
        '/%2e%2e/main.js',
        '/%2e%2e%2fmain.js',
        '/%2e%2e%2f%2e%2e%2fpackage.json',
        '/assets/../../package.json',
        '/assets/%2e%2e/%2e%2e/package.json',
        '/assets/..%2f..%2fpackage.json',
        '/%252e%252e/%252e%252e/package.json',
        '/%c0%ae%c0%ae/%c0%ae%c0%ae/package.json',
        '/%c0%ae%c0%ae%c0%afmain.js',
        '/..%5cmain.js',
        '/..\\main.js',
        '/assets/..%5c..%5cpackage.json',
        '/%2e%2e%5c%2e%2e%5cpackage.json',
        '/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
        '/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
        '/.%2e/.%2e/package.json',
        '/index.html%00',
        '/index.html%00.js',
        '/index.html%2500',
        '/index.html/',
        '/index.html/.',
        '/./index.html',
        '//index.html',
        '///etc/passwd',
        '/index.html.br',
        '/index.html.gz',
        '/.env',
        '/.git/config',
        '/package.json',
        '/dist/main.js',
        '/src/config.ts',
        '/main.js',
        '/config.js',
        '/node_modules/',
        '/assets/',
        '/assets',
        '/assets/.',
        '/ASSETS/',
        '/index.HTML',
        '/INDEX.html',
        '/index.html;.js',
        '/index.html#x',
        '/x/../index.html',
        '/assets/../index.html',
        '/%69ndex.html',
        `${asset}%00`,
        `${asset}/..`,
        `${asset}.br`,
        `${asset}.gz`,
        `${asset}/`,
        `/${'a/'.repeat(3000)}`,
        `/assets/${'x'.repeat(5000)}`,
        '/%ff',
        '/%',
        '/%zz',
        '/%ed%a0%80',
        '/favicon.ico'
      ]
    }
  },
  {
    family: 'platform',
    route: 'GET (unknown paths)',
    weight: 2,
    auth: 'any',
    paths: (rng) => [
      '/',
      '/api',
      '/api/',
      '/api/users/1',
      '/api/admin',
      '/admin/',
      '/api/../../etc/passwd',
      '/api/users/me/../../sessions',
      '/%',
      '/%%',
      '/%u0041',
      `/${'x'.repeat(10_000)}`,
      `/api/${encodeURIComponent(noiseText(rng))}`,
      '/clientes',
      '/clientes/1',
      '/increment',
      '/api/attendance/sheet',
      '/api/attendance/sheets',
      '/api/department',
      '/server-status',
      '/.well-known/security.txt',
      '/wp-login.php',
      '/cgi-bin/test.cgi'
    ]
  }
]

// ---------------------------------------------------------------------------------------------------
// Methods: HEAD on every route, and methods no route has

/** Every route as a concrete path, with the method it is declared for. */
const declared = (ctx: Context): Array<readonly [string, string]> => [
  ['GET', '/clientes/1/extrato'],
  ['POST', '/clientes/1/transacoes'],
  ['GET', '/counter'],
  ['POST', '/increment'],
  ['GET', `/increment/${ctx.incrementKeys[0]}`],
  ['POST', '/api/users'],
  ['POST', '/api/sessions'],
  ['GET', '/api/sessions'],
  ['DELETE', '/api/sessions'],
  ['GET', '/api/users/me'],
  ['PATCH', '/api/users/me'],
  ['PUT', '/api/users/me/password'],
  ['GET', '/api/department/all'],
  ['GET', '/api/department/4/course_units'],
  ['GET', '/api/course_units'],
  ['GET', '/api/course_units/my'],
  ['POST', '/api/attendance/sheet/new'],
  ['GET', `/api/attendance/sheet/${ctx.sheets.open}`],
  ['GET', '/api/attendance/sheets/0'],
  ['POST', `/api/attendance/sheet/${ctx.sheets.open}/status`],
  ['GET', `/api/attendance/sheet/${ctx.sheets.open}/students`],
  ['GET', `/api/attendance/sheet/${ctx.sheets.open}/students.csv`],
  ['GET', `/api/attendance/sheet/${ctx.sheets.open}/events`],
  ['POST', `/api/attendance/sheet/${ctx.sheets.open}/student/registration`],
  ['DELETE', `/api/attendance/sheet/${ctx.sheets.open}/student/deletion`],
  ['GET', '/health'],
  ['GET', '/ready'],
  ['GET', '/metrics'],
  ['GET', '/openapi.json'],
  ['GET', '/documentation'],
  ['GET', '/documentation/static/index.html'],
  ...ctx.webFiles.slice(0, 6).map((file) => ['GET', file] as const)
]

const otherMethods = [
  'OPTIONS',
  'TRACE',
  'PROPFIND',
  'PROPPATCH',
  'MKCOL',
  'COPY',
  'MOVE',
  'LOCK',
  'UNLOCK',
  'PURGE',
  'LINK',
  'UNLINK',
  'SEARCH',
  'REPORT',
  'QUERY',
  'FOO',
  'M-SEARCH',
  'NOTIFY',
  'SUBSCRIBE',
  'SOURCE',
  'ACL',
  'BIND',
  'REBIND',
  'MKCALENDAR'
]
const writeMethods = ['POST', 'PUT', 'PATCH', 'DELETE']

function familyOf(path: string): string {
  if (path.startsWith('/clientes')) return 'crebitos'
  if (path.startsWith('/counter')) return 'counter'
  if (path.startsWith('/increment')) return 'increments'
  if (path.startsWith('/api/users') || path.startsWith('/api/sessions')) return 'accounts'
  if (path.startsWith('/api/')) return 'attendance'
  if (/^\/(health|ready|metrics|openapi\.json|documentation)/.test(path)) return 'platform'
  return 'static'
}

function methodCase(rng: Random, ctx: Context): HttpCase {
  const routes = declared(ctx)
  const [declaredMethod, path] = rng.pick(routes)
  const isDeclared = (method: string) => routes.some(([m, p]) => m === method && p === path)
  const method = rng.weighted([
    [declaredMethod === 'GET' ? 5 : 1, 'HEAD'],
    [3, rng.pick(otherMethods)],
    [2, rng.pick(writeMethods.filter((m) => !isDeclared(m)).concat(isDeclared('GET') ? [] : ['GET']))]
  ] as const)
  // A live session on HEAD: it must never write, whoever asks. An undeclared write method gets dead
  // credentials, so that a route added later (DELETE /api/users/me, say) cannot wipe the setup.
  const auth = writeMethods.includes(method)
    ? deadAuth(rng, ctx)
    : rng.chance(0.6)
      ? { what: "the teacher's bearer token", headers: teacherBearer(ctx) }
      : anyAuth(rng, ctx)
  const body = method !== 'HEAD' && rng.chance(0.3) ? '{"valor":1,"tipo":"c","descricao":"x"}' : undefined
  const family = familyOf(path)
  // HEAD is reported per route (each GET route decides whether it answers HEAD); the other methods together.
  const route =
    method === 'HEAD'
      ? `HEAD ${routeOf(path)}`
      : `${otherMethods.includes(method) ? 'other methods' : 'undeclared methods'} on any route`
  return {
    kind: 'http',
    family,
    route,
    method,
    path,
    headers: { ...auth.headers, ...(body ? { 'content-type': 'application/json' } : {}) },
    body,
    // HEAD and OPTIONS may have an answer (HEAD of a GET, a CORS preflight); the others name no route.
    expect:
      method === 'HEAD' || method === 'OPTIONS' || method === 'TRACE' || method === 'GET'
        ? path.endsWith('/events')
          ? 'stream'
          : 'any'
        : 'refused',
    what: `${method} on ${declaredMethod} ${routeOf(path)}; ${auth.what}`
  }
}

function routeOf(path: string): string {
  return path
    .replace(/^\/clientes\/\d+/, '/clientes/:id')
    .replace(/^\/increment\/.+/, '/increment/:key')
    .replace(/^\/api\/department\/\d+/, '/api/department/:id')
    .replace(/^\/api\/attendance\/sheets\/\d+/, '/api/attendance/sheets/:courseId')
    .replace(/^\/api\/attendance\/sheet\/(?!new$)[^/]+/, '/api/attendance/sheet/:id')
    .replace(/^\/assets\/.*/, '/assets/*')
}

// ---------------------------------------------------------------------------------------------------

export const routeSpecs: RouteSpec[] = [
  ...[transactions, increment, register, login, profile, password, newSheet, status, signIn, removal].map(
    (spec): RouteSpec => ({
      family: spec.family,
      route: spec.route,
      weight: spec.weight,
      build: (rng, ctx, index) => writeCase(spec, rng, ctx, index)
    })
  ),
  { family: 'accounts', route: 'DELETE /api/sessions', weight: 2, build: (rng, ctx) => logout(rng, ctx) },
  ...reads.map((spec): RouteSpec => ({
    family: spec.family,
    route: spec.route,
    weight: spec.weight,
    build: (rng, ctx) => readCase(spec, rng, ctx)
  })),
  { family: 'methods', route: 'HEAD and other methods', weight: 8, build: (rng, ctx) => methodCase(rng, ctx) },
  { family: 'raw-http', route: 'raw HTTP', weight: 5, build: (rng, ctx) => rawCase(rng, ctx) }
]

/** Case `index`, rebuilt from its own generator alone. */
export function buildCase(rng: Random, ctx: Context, index: number): Case {
  const spec = rng.weighted(routeSpecs.map((item) => [item.weight, item] as const))
  return spec.build(rng, ctx, index)
}
