import { Type, type Static } from 'typebox'

export const Credentials = Type.Object({
  email: Type.String({ format: 'email', maxLength: 254 }),
  password: Type.String({ minLength: 8, maxLength: 1024 })
})
export type Credentials = Static<typeof Credentials>

export const User = Type.Object({
  id: Type.Integer(),
  email: Type.String()
})

export const NewSession = Type.Object({
  token: Type.String({ description: 'send as `Authorization: Bearer <token>`; also set as an HttpOnly cookie' }),
  userId: Type.Integer(),
  expiresAt: Type.String({ format: 'date-time' })
})

export const CurrentSession = Type.Object({
  userId: Type.Integer(),
  email: Type.String()
})

export const ErrorBody = Type.Object({
  error: Type.String(),
  message: Type.String(),
  details: Type.Optional(Type.Array(Type.String()))
})
