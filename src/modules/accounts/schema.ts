import { Type, type Static } from 'typebox'
import { TrimmedText } from '../../platform/validation.js'

export const Credentials = Type.Object({
  email: Type.String({ format: 'email', maxLength: 254 }),
  password: Type.String({ minLength: 8, maxLength: 1024 })
})
export type Credentials = Static<typeof Credentials>

const Name = TrimmedText({ min: 1, max: 100 })

export const NewUser = Type.Object({
  email: Type.String({ format: 'email', maxLength: 254 }),
  password: Type.String({ minLength: 8, maxLength: 1024 }),
  firstName: Type.Optional(Name),
  lastName: Type.Optional(Name)
})
export type NewUser = Static<typeof NewUser>

export const User = Type.Object({
  id: Type.Integer(),
  email: Type.String(),
  firstName: Type.String({ description: '"" when never given' }),
  lastName: Type.String({ description: '"" when never given' })
})

export const ProfileChange = Type.Object({
  firstName: Type.Optional(Name),
  lastName: Type.Optional(Name)
})
export type ProfileChange = Static<typeof ProfileChange>

export const PasswordChange = Type.Object({
  currentPassword: Type.String({ minLength: 1, maxLength: 1024 }),
  newPassword: Type.String({ minLength: 8, maxLength: 1024 })
})

export const NewSession = Type.Object({
  token: Type.String({ description: 'send as `Authorization: Bearer <token>`; also set as an HttpOnly cookie' }),
  userId: Type.Integer(),
  expiresAt: Type.String({ format: 'date-time' })
})

export const RotatedSession = Type.Object(NewSession.properties, {
  description: "the caller's new session, also set as the cookie; the old token no longer works"
})

export const CurrentSession = Type.Object({
  userId: Type.Integer(),
  email: Type.String()
})
