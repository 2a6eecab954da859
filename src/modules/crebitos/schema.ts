import { Type, type Static } from 'typebox'
import { noNul } from '../../platform/validation.js'

// Digits only: "1e3" or "0x10" are not client ids, however a number parser reads them. Any length
// is well formed (the contract answers 404 for a client that does not exist, not 422 for its size);
// maxLength matches the router's maxParamLength, so the pattern never runs on more than 1000 characters.
export const ClientParams = Type.Object({
  id: Type.String({ pattern: '^[1-9][0-9]*$', maxLength: 1000, description: 'client id (1–5 exist)' })
})

export const NewTransaction = Type.Object(
  {
    valor: Type.Integer({ minimum: 1, maximum: 2147483647, description: 'amount in cents' }),
    tipo: Type.Enum(['c', 'd'], { description: 'c = credit, d = debit' }),
    // PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database.
    descricao: Type.String({ minLength: 1, maxLength: 10, pattern: noNul })
  },
  { additionalProperties: true }
)
export type NewTransaction = Static<typeof NewTransaction>

export const Balance = Type.Object({
  limite: Type.Integer(),
  saldo: Type.Integer()
})

export const Statement = Type.Object({
  saldo: Type.Object({
    total: Type.Integer(),
    data_extrato: Type.String({ format: 'date-time' }),
    limite: Type.Integer()
  }),
  ultimas_transacoes: Type.Array(
    Type.Object({
      valor: Type.Integer(),
      tipo: Type.Enum(['c', 'd']),
      descricao: Type.String(),
      realizada_em: Type.String({ format: 'date-time' })
    }),
    { maxItems: 10 }
  )
})
export type Statement = Static<typeof Statement>
