import { Ajv, type ErrorObject } from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify'
import { InvalidInput } from './errors.js'

// Bodies are JSON: a string is not a number and null is not "". Params, query strings and headers
// arrive as text, so there (and only there) "42" may become 42.
const bodies = addFormats.default(new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: true, allErrors: true, verbose: true }))
const texts = addFormats.default(new Ajv({ coerceTypes: 'array', useDefaults: true, removeAdditional: true, allErrors: true }))

const compile: FastifySchemaCompiler<object> = ({ schema, httpPart }) =>
  (httpPart === 'body' ? bodies : texts).compile(schema)

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
