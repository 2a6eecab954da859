import { ApiError, logIn } from './api.js'
import { busy, byId, markInvalid, showMessages } from './dom.js'

const form = byId<HTMLFormElement>('login-form')
const email = byId<HTMLInputElement>('email')
const password = byId<HTMLInputElement>('password')
const errors = byId('login-errors')
const submit = form.querySelector<HTMLButtonElement>('button[type=submit]')!

/** Where to go after logging in: back to the page that asked for it, if it is one of ours. */
function nextPage(): string {
  const next = new URLSearchParams(location.search).get('next') ?? ''
  return /^\/[\w-]+\.html(\?[\w=&%.-]*)?$/.test(next) ? next : 'index.html'
}

function showFailure(lines: string[], fieldsInvalid: boolean): void {
  markInvalid(email, fieldsInvalid)
  markInvalid(password, fieldsInvalid)
  showMessages(errors, lines)
}

form.addEventListener('submit', async (event) => {
  event.preventDefault()
  showFailure([], false)
  try {
    await busy(submit, () => logIn({ email: email.value.trim(), password: password.value }))
    location.assign(nextPage())
  } catch (error) {
    const failure = error as ApiError
    // A malformed email or a too-short password can't be right either: same answer as wrong credentials.
    if (failure.status === 401 || failure.status === 422) showFailure(['Invalid login!'], true)
    else if (failure.status === 429) showFailure(['Too many login attempts. Wait a minute and try again.'], false)
    else showFailure(failure.lines, false)
    password.select()
    password.focus()
  }
})
