import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify'
import { InvalidInput } from './errors.js'

// Bodies are JSON: a string is not a number and null is not "". Params, query strings and headers
// arrive as text, so there (and only there) "42" may become 42.
const bodies = addFormats.default(new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: true, allErrors: true, verbose: true }))
const texts = addFormats.default(new Ajv({ coerceTypes: 'array', useDefaults: true, removeAdditional: true, allErrors: true }))

const compile: FastifySchemaCompiler<object> = ({ schema, httpPart }) =>
  wellFormedTexts((httpPart === 'body' ? bodies : texts).compile(schema))

// In Unicode mode a surrogate pair is one code point, so this matches only a lone (ill-formed) surrogate.
const loneSurrogate = /\p{Cs}/u

/**
 * The path of the first string (key or value) holding a lone surrogate, or undefined when all are well
 * formed. Iterative: a body may nest thousands of levels deep within the body limit.
 */
function illFormedText (root: unknown): string | undefined {
  const pending: Array<[value: unknown, path: string]> = [[root, '']]
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [value, path] = next
    if (typeof value === 'string') {
      if (loneSurrogate.test(value)) return path
      continue
    }
    if (typeof value !== 'object' || value === null) continue
    for (const [key, item] of Object.entries(value)) {
      const field = `${path}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`
      if (loneSurrogate.test(key)) return field
      pending.push([item, field])
    }
  }
  return undefined
}

/**
 * Text that is not well-formed Unicode (JSON allows "\ud800") cannot be stored as it was sent:
 * PostgreSQL would keep U+FFFD instead, and the request would then find another key than its own.
 * It is refused like any invalid field, before anything runs.
 */
function wellFormedTexts (validate: ValidateFunction): ValidateFunction {
  const checked = ((data: unknown, context?: Parameters<ValidateFunction>[1]) => {
    const valid = validate(data, context)
    checked.errors = validate.errors
    if (!valid) return false
    const field = illFormedText(data)
    if (field === undefined) return true
    checked.errors = [{ instancePath: field, schemaPath: '#', keyword: 'wellFormed', params: {}, message: 'must be well-formed Unicode text' }]
    return false
  }) as ValidateFunction
  checked.schemaEnv = validate.schemaEnv
  checked.schema = validate.schema
  return checked
}

export function useValidation (app: FastifyInstance) {
  app.setValidatorCompiler(compile)
  app.setSchemaErrorFormatter((errors, dataVar) => {
    const error = new Error(`invalid ${dataVar}`) as Error & { details: string[] }
    error.details = describe(errors as ErrorObject[], dataVar)
    return error
  })
}

/** One "field: reason" per invalid field, in the order the schema found them. */
export function describe (errors: ErrorObject[], dataVar: string): string[] {
  const byField = new Map<string, string>()
  for (const error of errors) {
    const missing = error.keyword === 'required' ? `/${(error.params as { missingProperty: string }).missingProperty}` : ''
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
 * The rule a JSON schema cannot state: text is trimmed before its length is checked, in characters as
 * PostgreSQL counts them (code points). Answers the trimmed texts, or throws one 422 naming every field
 * out of bounds. A field given as undefined is left out.
 */
export function trimTexts<T extends Record<string, string | undefined>> (texts: T, bounds: Record<keyof T, [min: number, max: number]>): T {
  const details: string[] = []
  const trimmed: Record<string, string | undefined> = {}
  for (const [field, text] of Object.entries(texts)) {
    const value = text?.trim()
    const [min, max] = bounds[field]
    const length = value === undefined ? min : [...value].length
    if (length === 0) details.push(`${field}: must not be blank`)
    else if (length < min || length > max) details.push(`${field}: must have ${min} to ${max} characters, not counting surrounding spaces`)
    trimmed[field] = value
  }
  if (details.length > 0) throw new InvalidInput(details)
  return trimmed as T
}
