import { api, ApiError, type User } from './api.js'
import { busy, byId, clearInvalid, markInvalid, showMessages } from './dom.js'
import { showMessage } from './modal.js'
import { showUser, startShell } from './shell.js'

const profileForm = byId<HTMLFormElement>('profile-form')
const firstName = byId<HTMLInputElement>('first-name')
const lastName = byId<HTMLInputElement>('last-name')
const profileErrors = byId('profile-errors')
const passwordForm = byId<HTMLFormElement>('password-form')
const current = byId<HTMLInputElement>('current-password')
const fresh = byId<HTMLInputElement>('new-password')
const repeat = byId<HTMLInputElement>('repeat-password')
const passwordErrors = byId('password-errors')

type Problem = [HTMLInputElement, string]

function report(form: HTMLFormElement, box: HTMLElement, problems: Problem[]): boolean {
  clearInvalid(form)
  for (const [input] of problems) markInvalid(input, true)
  showMessages(
    box,
    problems.map(([, message]) => message)
  )
  problems[0]?.[0].focus()
  return problems.length === 0
}

function fill(user: User): void {
  byId<HTMLInputElement>('profile-email').value = user.email
  byId<HTMLInputElement>('password-username').defaultValue = user.email
  firstName.value = user.firstName
  lastName.value = user.lastName
}

profileForm.addEventListener('submit', async (event) => {
  event.preventDefault()
  const problems: Problem[] = []
  if (firstName.value.trim().length < 3) problems.push([firstName, 'First name needs at least 3 characters!'])
  if (lastName.value.trim().length < 3) problems.push([lastName, 'Last name needs at least 3 characters!'])
  if (!report(profileForm, profileErrors, problems)) return
  try {
    const user = await busy(profileForm.querySelector('button')!, () =>
      api<User>('PATCH', '/api/users/me', {
        body: { firstName: firstName.value.trim(), lastName: lastName.value.trim() }
      })
    )
    fill(user)
    showUser(user)
    await showMessage('Profile updated.')
  } catch (error) {
    showMessages(profileErrors, (error as ApiError).lines)
  }
})

passwordForm.addEventListener('submit', async (event) => {
  event.preventDefault()
  const problems: Problem[] = []
  if (current.value === '') problems.push([current, 'Enter your current password!'])
  if (fresh.value.length < 8) problems.push([fresh, 'Password needs at least 8 characters!'])
  if (fresh.value !== repeat.value) problems.push([repeat, 'Passwords do not match!'])
  if (!report(passwordForm, passwordErrors, problems)) return
  try {
    await busy(passwordForm.querySelector('button')!, () =>
      api('PUT', '/api/users/me/password', {
        body: { currentPassword: current.value, newPassword: fresh.value }
      })
    )
    passwordForm.reset()
    await showMessage('Password updated.', { text: 'Your other devices have been logged out.' })
  } catch (error) {
    const failure = error as ApiError
    if (failure.status === 403) report(passwordForm, passwordErrors, [[current, 'The current password is wrong!']])
    else showMessages(passwordErrors, failure.lines)
  }
})

fill(await startShell())
