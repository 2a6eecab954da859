import { api, ApiError, logIn } from './api.js'
import { busy, byId, clearInvalid, markInvalid, showMessages } from './dom.js'
import { showMessage } from './modal.js'

const form = byId<HTMLFormElement>('register-form')
const firstName = byId<HTMLInputElement>('first-name')
const lastName = byId<HTMLInputElement>('last-name')
const email = byId<HTMLInputElement>('email')
const password = byId<HTMLInputElement>('password')
const repeat = byId<HTMLInputElement>('repeat-password')
const errors = byId('register-errors')
const submit = form.querySelector<HTMLButtonElement>('button[type=submit]')!

/** Every client-side problem at once, each with the field it belongs to. */
function check(): [HTMLInputElement, string][] {
  const problems: [HTMLInputElement, string][] = []
  if (firstName.value.trim().length < 3) problems.push([firstName, 'First name needs at least 3 characters!'])
  if (lastName.value.trim().length < 3) problems.push([lastName, 'Last name needs at least 3 characters!'])
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email.value.trim())) problems.push([email, 'Invalid email!'])
  if (password.value.length < 8) problems.push([password, 'Password needs at least 8 characters!'])
  if (password.value !== repeat.value) problems.push([repeat, 'Passwords do not match!'])
  return problems
}

form.addEventListener('submit', async (event) => {
  event.preventDefault()
  clearInvalid(form)
  const problems = check()
  for (const [input] of problems) markInvalid(input, true)
  showMessages(
    errors,
    problems.map(([, message]) => message)
  )
  if (problems.length > 0) {
    problems[0][0].focus()
    return
  }
  const credentials = { email: email.value.trim(), password: password.value }
  try {
    await busy(submit, async () => {
      await api('POST', '/api/users', {
        body: { ...credentials, firstName: firstName.value.trim(), lastName: lastName.value.trim() },
        loginOn401: false
      })
      await logIn(credentials)
    })
  } catch (error) {
    const failure = error as ApiError
    if (failure.status === 409) {
      markInvalid(email, true)
      showMessages(errors, ['An account with this email already exists.'])
    } else {
      showMessages(errors, failure.lines)
    }
    return
  }
  await showMessage('Registration complete', {
    text: 'Your account is ready and you are logged in.',
    action: 'Create an attendance sheet'
  })
  location.assign('index.html')
})
