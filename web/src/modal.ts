/**
 * Modal dialogs on the native <dialog>: role dialog, focus kept inside while open, Esc closes,
 * and focus goes back to whatever had it before.
 */
import { element } from './dom.js'

let counter = 0

/** Opens a <dialog> as a modal and resolves with its returnValue once it closes. */
export function openDialog(dialog: HTMLDialogElement): Promise<string> {
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null
  dialog.returnValue = ''
  dialog.showModal()
  return new Promise((resolve) => {
    dialog.addEventListener(
      'close',
      () => {
        if (opener?.isConnected) opener.focus()
        resolve(dialog.returnValue)
      },
      { once: true }
    )
  })
}

interface DialogParts {
  dialog: HTMLDialogElement
  body: HTMLElement
  actions: HTMLElement
}

function buildDialog(title: string, text: string | undefined, tone: 'success' | 'danger' | 'info'): DialogParts {
  const id = `dialog-${++counter}`
  const dialog = element('dialog', {
    className: `modal modal-${tone}`,
    attributes: { 'aria-labelledby': `${id}-title` }
  })
  const form = element('form', { attributes: { method: 'dialog' } })
  const heading = element('h2', { text: title, attributes: { id: `${id}-title` } })
  const body = element('div', { className: 'modal-body' })
  if (text) {
    body.append(element('p', { text, attributes: { id: `${id}-text` } }))
    dialog.setAttribute('aria-describedby', `${id}-text`)
  }
  const actions = element('div', { className: 'modal-actions' })
  form.append(heading, body, actions)
  dialog.append(form)
  // A click on the backdrop (the dialog box itself, outside its form) dismisses it, like Esc.
  dialog.addEventListener('click', (event) => {
    if (event.target === dialog) dialog.close()
  })
  document.body.append(dialog)
  return { dialog, body, actions }
}

function button(label: string, value: string, className: string): HTMLButtonElement {
  return element('button', { text: label, className, attributes: { value, type: 'submit' } })
}

/** A message with one button; resolves when it is dismissed (button, Esc or backdrop). */
export async function showMessage(
  title: string,
  {
    text,
    tone = 'success',
    action = 'OK'
  }: { text?: string; tone?: 'success' | 'danger' | 'info'; action?: string } = {}
): Promise<void> {
  const { dialog, actions } = buildDialog(title, text, tone)
  const ok = button(action, 'ok', 'button button-primary')
  ok.autofocus = true
  actions.append(ok)
  await openDialog(dialog)
  dialog.remove()
}

/** Asks before something that cannot be undone; true only for the confirming button. */
export async function confirmAction(
  title: string,
  { text, confirm, danger = true }: { text?: string; confirm: string; danger?: boolean }
): Promise<boolean> {
  const { dialog, actions } = buildDialog(title, text, danger ? 'danger' : 'info')
  const cancel = button('Cancel', 'cancel', 'button button-secondary')
  // The safe choice has the focus, so an absent-minded Enter does nothing harmful.
  cancel.autofocus = true
  actions.append(cancel, button(confirm, 'confirm', danger ? 'button button-danger' : 'button button-primary'))
  const answer = await openDialog(dialog)
  dialog.remove()
  return answer === 'confirm'
}
