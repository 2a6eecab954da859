import { api, ApiError, sheetPath, type Sheet } from './api.js'
import { busy, byId, formatDateTime, markInvalid, showMessages } from './dom.js'
import { showMessage } from './modal.js'
import { checkRegistration } from './registration.js'

const id = new URLSearchParams(location.search).get('id')

function chooseClass(): void {
  const form = byId<HTMLFormElement>('class-form')
  const input = byId<HTMLInputElement>('class-id')
  const errors = byId('class-errors')
  byId('choose-class').hidden = false
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const value = input.value.trim()
    const valid = value.length === 6
    markInvalid(input, !valid)
    showMessages(errors, valid ? [] : ['Class ID must have 6 characters!'])
    if (valid) location.assign(`reg.html?id=${encodeURIComponent(value)}`)
    else input.focus()
  })
}

function showSheet(sheet: Sheet): void {
  byId('class-title').textContent = `Class of ${sheet.courseUnitName}`
  document.title = `Sign in: ${sheet.courseUnitName} · Attendance`
  byId('class-unit').textContent = sheet.courseUnitName
  byId('class-teacher').textContent = sheet.creatorName.trim() || '—'
  byId('class-time').textContent = formatDateTime(sheet.timestamp)
  byId('class-summary').textContent = sheet.summary ?? '—'
  byId('class-details').hidden = false
}

const closedMessage = 'This attendance sheet is closed; registration is not possible.'

function registrationForm(sheetId: string): void {
  const form = byId<HTMLFormElement>('registration-form')
  const nmec = byId<HTMLInputElement>('nmec')
  const name = byId<HTMLInputElement>('name')
  const errors = byId('registration-errors')
  const done = byId('registration-done')
  const submit = form.querySelector<HTMLButtonElement>('button[type=submit]')!
  form.hidden = false

  const fieldError = (input: HTMLInputElement, box: HTMLElement, message: string | undefined) => {
    markInvalid(input, message !== undefined)
    showMessages(box, message ? [message] : [])
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    showMessages(errors, [])
    const check = checkRegistration(nmec.value, name.value)
    fieldError(nmec, byId('nmec-error'), check.nmecError)
    fieldError(name, byId('name-error'), check.nameError)
    if (!check.value) {
      ;(check.nmecError ? nmec : name).focus()
      return
    }
    try {
      await busy(submit, () =>
        api('POST', `${sheetPath(sheetId)}/student/registration`, { body: check.value, loginOn401: false })
      )
    } catch (error) {
      const failure = error as ApiError
      if (failure.status === 409) showMessages(errors, ['You are already registered on this sheet.'])
      else if (failure.status === 403) showMessages(errors, [closedMessage])
      else if (failure.status === 429)
        showMessages(errors, ['Too many sign-ins right now. Wait a few seconds and try again.'])
      else showMessages(errors, failure.lines)
      return
    }
    // One sign-in per visit: the form stays filled in, for the student to show, and can't be sent again.
    for (const control of form.elements) (control as HTMLInputElement | HTMLButtonElement).disabled = true
    showMessages(done, [`Attendance recorded for ${check.value.nmec}.`])
    await showMessage('Attendance recorded.', { text: `${check.value.name}, you are on the list.` })
  })
}

async function signIn(sheetId: string): Promise<void> {
  byId('sign-in').hidden = false
  let sheet: Sheet
  try {
    sheet = await api<Sheet>('GET', sheetPath(sheetId), { loginOn401: false })
  } catch (error) {
    byId('class-title').textContent = 'Class not found'
    showMessages(byId('sheet-error'), (error as ApiError).lines)
    return
  }
  showSheet(sheet)
  if (!sheet.isActive) showMessages(byId('sheet-error'), [closedMessage])
  else registrationForm(sheet.id)
}

if (id === null || id === '') chooseClass()
else await signIn(id)
