/** The checks a sign-in gets before it is sent, the same on the student page and in the teacher's manual form. */

export interface RegistrationInput {
  nmec: number
  name: string
}
export interface RegistrationCheck {
  value?: RegistrationInput
  nmecError?: string
  nameError?: string
}

export function checkRegistration(nmecText: string, nameText: string): RegistrationCheck {
  const digits = nmecText.trim()
  const name = nameText.trim()
  let nmecError: string | undefined
  if (digits === '') nmecError = 'Enter the student number!'
  else if (!/^\d{1,8}$/.test(digits) || Number(digits) < 1)
    nmecError = 'The student number must be a number from 1 to 99999999!'
  const nameError =
    name.length < 5
      ? 'Name needs at least 5 characters!'
      : name.length > 100
        ? 'Name can have at most 100 characters!'
        : undefined
  if (nmecError || nameError) return { nmecError, nameError }
  return { value: { nmec: Number(digits), name } }
}
