import { Ajv, type ErrorObject } from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify'

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
