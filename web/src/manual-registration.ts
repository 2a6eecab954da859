/**
 * The "Register a student manually" dialog of the sheet panel: its form, checks and messages. The
 * request is its owner's, which knows the sheet shown.
 */
import type { ApiError } from './api.js'
import { busy, byId, markInvalid, showMessages } from './dom.js'
import { openDialog } from './modal.js'
import { checkRegistration } from './registration.js'

export interface ManualRegistrationOwner {
  /** Whether a sheet is shown: without one the form does nothing. */
  hasSheet(): boolean
  /** Signs the student in on the sheet shown now. */
  register(student: { nmec: number; name: string }): Promise<void>
  reloadList(): Promise<void>
}

export function setUpManualRegistration(owner: ManualRegistrationOwner, opener: HTMLButtonElement): void {
  const dialog = byId<HTMLDialogElement>('manual-dialog')
  const form = byId<HTMLFormElement>('manual-form')
  const nmecInput = byId<HTMLInputElement>('manual-nmec')
  const nameInput = byId<HTMLInputElement>('manual-name')
  const nmecError = byId('manual-nmec-error')
  const nameError = byId('manual-name-error')
  const errors = byId('manual-errors')
  const note = byId('manual-note')
  const submit = form.querySelector<HTMLButtonElement>('button[type=submit]')!

  const fieldError = (input: HTMLInputElement, box: HTMLElement, message: string | undefined) => {
    markInvalid(input, message !== undefined)
    showMessages(box, message ? [message] : [])
  }

  opener.addEventListener('click', () => {
    form.reset()
    for (const [input, box] of [
      [nmecInput, nmecError],
      [nameInput, nameError]
    ] as const)
      fieldError(input, box, undefined)
    showMessages(errors, [])
    showMessages(note, [])
    void openDialog(dialog)
    nmecInput.focus()
  })
  byId('manual-close').addEventListener('click', () => dialog.close())

  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    if (!owner.hasSheet()) return
    showMessages(note, [])
    showMessages(errors, [])
    const check = checkRegistration(nmecInput.value, nameInput.value)
    fieldError(nmecInput, nmecError, check.nmecError)
    fieldError(nameInput, nameError, check.nameError)
    if (!check.value) {
      ;(check.nmecError ? nmecInput : nameInput).focus()
      return
    }
    const { nmec, name } = check.value
    try {
      await busy(submit, () => owner.register({ nmec, name }))
      form.reset()
      showMessages(note, [`Student ${nmec} (${name}) registered.`])
      nmecInput.focus()
      await owner.reloadList()
    } catch (error) {
      const failure = error as ApiError
      showMessages(
        errors,
        failure.status === 409 ? ['This student is already registered on this sheet.'] : failure.lines
      )
    }
  })
}
