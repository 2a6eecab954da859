import { Ajv, type ErrorObject, type SchemaValidateFunction, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify'
import { Type } from 'typebox'

// Bodies are JSON: a string is not a number and null is not "". Params, query strings and headers
// arrive as text, so there (and only there) "42" may become 42.
const bodies = addFormats.default(
  new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: true, allErrors: true, verbose: true })
)
const texts = addFormats.default(
  new Ajv({ coerceTypes: 'array', useDefaults: true, removeAdditional: true, allErrors: true })
)

/**
 * Keywords of ours, so a rule lives in the schema (and the OpenAPI document) rather than in a route:
 * `upperCase: true` upper-cases a string in place; `trimmedLength: [min, max]` trims it in place, then
 * checks its length in characters as PostgreSQL counts them (code points). Upper-casing comes first
 * (keywords run in the order they are added), since it can change the length ("ß" is "SS").
 */
const upperCase: SchemaValidateFunction = (upper: boolean, text: string, _schema, place) => {
  if (upper && place) place.parentData[place.parentDataProperty] = text.toUpperCase()
  return true
}

const trimmedLength: SchemaValidateFunction = ([min, max]: [number, number], text: string, _schema, place) => {
  const trimmed = text.trim()
  if (place) place.parentData[place.parentDataProperty] = trimmed
  const length = [...trimmed].length
  if (length >= min && length <= max) return true
  const message =
    length === 0 ? 'must not be blank' : `must have ${min} to ${max} characters, not counting surrounding spaces`
  trimmedLength.errors = [{ keyword: 'trimmedLength', message, params: { min, max } }]
  return false
}

for (const ajv of [bodies, texts]) {
  ajv.addKeyword({ keyword: 'upperCase', type: 'string', schemaType: 'boolean', modifying: true, validate: upperCase })
  ajv.addKeyword({
    keyword: 'trimmedLength',
    type: 'string',
    schemaType: 'array',
    modifying: true,
    errors: true,
    validate: trimmedLength
  })
}

/**
 * Text that is trimmed (and, with `upperCase`, upper-cased) before its length is checked: what the
 * route receives, and what the OpenAPI document says. `maxLength` only bounds the text as sent.
 */
export function TrimmedText({
  min,
  max,
  upperCase = false,
  description
}: {
  min: number
  max: number
  upperCase?: boolean
  description?: string
}) {
  const rule = `${min}–${max} characters once trimmed${upperCase ? ' and upper-cased' : ''}`
  return Type.String({
    maxLength: 1000,
    pattern: noNul,
    ...(upperCase && { upperCase: true }),
    trimmedLength: [min, max],
    description: description ? `${description}: ${rule}` : rule
  })
}

const compile: FastifySchemaCompiler<object> = ({ schema, httpPart }) =>
  wellFormedTexts((httpPart === 'body' ? bodies : texts).compile(schema))

// In Unicode mode a surrogate pair is one code point, so this matches only a lone (ill-formed) surrogate.
const loneSurrogate = /\p{Cs}/u

/**
 * The path of the first string (key or value) holding a lone surrogate, or undefined when all are well
 * formed. Iterative: a body may nest thousands of levels deep within the body limit. Each pending
 * value keeps its parent and key, and a path is spelled out only for the string that fails: every
 * request of every route with a body passes here, and almost all are well formed.
 */
function illFormedText(root: unknown): string | undefined {
  const pending: Pending[] = [{ value: root, key: '', parent: undefined }]
  for (let next = pending.pop(); next; next = pending.pop()) {
    const { value } = next
    if (typeof value === 'string') {
      if (loneSurrogate.test(value)) return pathOf(next)
      continue
    }
    if (typeof value !== 'object' || value === null) continue
    for (const key in value) {
      if (!Object.hasOwn(value, key)) continue
      if (loneSurrogate.test(key)) return pathOf({ value: undefined, key, parent: next })
      pending.push({ value: (value as Record<string, unknown>)[key], key, parent: next })
    }
  }
  return undefined
}

interface Pending {
  value: unknown
  key: string
  parent: Pending | undefined
}

/** `/a/0/b~1c`: the JSON pointer of a pending value, from its parents' keys. */
function pathOf(at: Pending): string {
  let path = ''
  for (let step: Pending | undefined = at; step?.parent; step = step.parent)
    path = `/${step.key.replaceAll('~', '~0').replaceAll('/', '~1')}${path}`
  return path
}

/**
 * Text that is not well-formed Unicode (JSON allows "\ud800") cannot be stored as it was sent:
 * PostgreSQL would keep U+FFFD instead, and the request would then find another key than its own.
 * It is refused like any invalid field, before anything runs.
 */
function wellFormedTexts(validate: ValidateFunction): ValidateFunction {
  const checked = ((data: unknown, context?: Parameters<ValidateFunction>[1]) => {
    const valid = validate(data, context)
    checked.errors = validate.errors
    if (!valid) return false
    const field = illFormedText(data)
    if (field === undefined) return true
    checked.errors = [
      {
        instancePath: field,
        schemaPath: '#',
        keyword: 'wellFormed',
        params: {},
        message: 'must be well-formed Unicode text'
      }
    ]
    return false
  }) as ValidateFunction
  checked.schemaEnv = validate.schemaEnv
  checked.schema = validate.schema
  return checked
}

export function useValidation(app: FastifyInstance) {
  app.setValidatorCompiler(compile)
  app.setSchemaErrorFormatter((errors, dataVar) => {
    const error = new Error(`invalid ${dataVar}`) as Error & { details: string[] }
    error.details = describe(errors as ErrorObject[], dataVar)
    return error
  })
}

/** One "field: reason" per invalid field, in the order the schema found them. */
export function describe(errors: ErrorObject[], dataVar: string): string[] {
  const byField = new Map<string, string>()
  for (const error of errors) {
    const missing =
      error.keyword === 'required' ? `/${(error.params as { missingProperty: string }).missingProperty}` : ''
    const field = `${error.instancePath}${missing}`.slice(1).replaceAll('/', '.') || dataVar
    if (!byField.has(field)) byField.set(field, missing ? 'is required' : reason(error))
  }
  return [...byField].map(([field, reason]) => `${field}: ${reason}`)
}

function reason(error: ErrorObject): string {
  const forbidden = (error.schema as { const?: unknown } | undefined)?.const
  if (error.keyword === 'not' && forbidden !== undefined) return `must not be ${JSON.stringify(forbidden)}`
  return error.message ?? 'is invalid'
}

/** PostgreSQL text cannot hold NUL: a pattern for text fields, so it is refused as input, not as a database error. */
export const noNul = '^[^\\u0000]*$'

/**
 * An id given as decimal text (a path parameter the schema let through as digits), as a number, or
 * undefined past PostgreSQL's integer range, where no row can exist: such an id names nothing (404).
 */
export function int4(text: string): number | undefined {
  const value = Number(text)
  return value >= -2147483648 && value <= 2147483647 ? value : undefined
}
