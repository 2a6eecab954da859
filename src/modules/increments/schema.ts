import { Type } from 'typebox'
import { noNul } from '../../platform/validation.js'

const Key = Type.String({ minLength: 1, maxLength: 200, pattern: noNul })

export const NewIncrement = Type.Object({
  key: Key,
  value: Type.Integer({ minimum: -2147483648, maximum: 2147483647, not: { const: 0 }, description: 'non-zero' })
})

export const KeyParams = Type.Object({ key: Key })

export const IncrementResult = Type.Object({
  key: Type.String(),
  value: Type.Integer({ description: "the key's total including this increment" })
})

export const KeyState = Type.Object({
  key: Type.String(),
  value: Type.Integer({ description: 'the acknowledged total' }),
  persistedValue: Type.Integer({ description: 'the total stored in PostgreSQL' }),
  persistedAt: Type.String({ format: 'date-time' })
})
