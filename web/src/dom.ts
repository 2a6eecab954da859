/** Small DOM helpers. Everything that came from a person or the server goes in as text, never as markup. */

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id)
  if (!element) throw new Error(`#${id} is missing from the page`)
  return element as T
}

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  { text, className, attributes }: { text?: string; className?: string; attributes?: Record<string, string> } = {}
): HTMLElementTagNameMap[K] {
  const created = document.createElement(tag)
  if (text !== undefined) created.textContent = text
  if (className) created.className = className
  for (const [name, value] of Object.entries(attributes ?? {})) created.setAttribute(name, value)
  return created
}

/** Fills a `role="alert"` box with one line per message, or hides it when there are none. */
export function showMessages(box: HTMLElement, lines: string[]): void {
  box.replaceChildren(...lines.map((line) => element('p', { text: line })))
  box.hidden = lines.length === 0
}

export function markInvalid(input: HTMLInputElement | HTMLSelectElement, invalid: boolean): void {
  if (invalid) input.setAttribute('aria-invalid', 'true')
  else input.removeAttribute('aria-invalid')
}

export function clearInvalid(form: HTMLFormElement): void {
  for (const input of form.querySelectorAll<HTMLInputElement>('[aria-invalid]')) markInvalid(input, false)
}

const pad = (n: number) => String(n).padStart(2, '0')

/** "dd/mm/yyyy HH:MM" (with ":SS" on request) in the viewer's time zone. */
export function formatDateTime(iso: string, { seconds = false } = {}): string {
  const date = new Date(iso)
  if (Number.isNaN(date.getTime())) return iso
  const day = `${pad(date.getDate())}/${pad(date.getMonth() + 1)}/${date.getFullYear()}`
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}${seconds ? `:${pad(date.getSeconds())}` : ''}`
  return `${day} ${time}`
}

/** Disables a submit button while its request runs, so a double click sends one request. */
export async function busy<T>(button: HTMLButtonElement, work: () => Promise<T>): Promise<T> {
  button.disabled = true
  button.setAttribute('aria-busy', 'true')
  try {
    return await work()
  } finally {
    button.disabled = false
    button.removeAttribute('aria-busy')
  }
}
