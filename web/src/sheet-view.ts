/**
 * One attendance sheet as its creator sees it (web/partials/sheet.html): details, QR code, open/close,
 * the live list of students, removal, manual sign-in and the CSV. Used by attendance-sheet.html and the history.
 */
import { api, ApiError, sheetPath, type Registration, type Sheet } from './api.js'
import { busy, byId, element, formatDateTime, markInvalid, showMessages } from './dom.js'
import { confirmAction, openDialog, showMessage } from './modal.js'
import { qrCode } from './qr.js'
import { checkRegistration } from './registration.js'

const pollMs = 15_000
// After the stream fails, the list is polled and the stream tried again: 15 s later, then twice as long each time.
const firstRetryMs = 15_000
const longestRetryMs = 5 * 60_000

export type SheetOutcome = 'shown' | 'not-yours' | 'not-found' | 'failed'

export interface SheetController {
  /** Shows a sheet (replacing the one shown before); any outcome but 'shown' shows nothing of it. */
  show(id: string): Promise<{ outcome: SheetOutcome, sheet?: Sheet, error?: ApiError }>
}

type RefreshMode = 'live' | 'poll' | 'paused' | 'closed'

const refreshTexts: Record<RefreshMode, string> = {
  live: 'Updates live',
  poll: 'Refreshes every 15 s',
  paused: 'Refresh paused while you select students',
  closed: 'Attendance is closed: the list no longer refreshes'
}

/**
 * Keeps the list current while the sheet is open: server-sent events, or a 15 s poll while they fail.
 * A stream can be refused (the server's cap on streams, 429) or cut (the page fell behind, the server
 * went away, the session ended): the page polls meanwhile and opens a stream again later, waiting
 * longer after each failure. At most one EventSource and one timer exist at a time, and neither
 * survives stop().
 */
class LiveUpdates {
  private source: EventSource | null = null
  private timer: number | null = null
  private active = false
  private retryMs = firstRetryMs
  private retryAt = 0

  constructor (
    private readonly eventsUrl: string,
    private readonly onChange: (reason: string) => Promise<void>,
    private readonly showMode: (mode: RefreshMode) => void
  ) {}

  start (): void {
    if (this.active) return
    this.active = true
    this.showMode('poll')
    if (this.mayListen()) this.listen()
    else this.schedulePoll()
  }

  stop (): void {
    this.active = false
    this.source?.close()
    this.source = null
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  /** After a manual refresh the next poll waits a full period again. */
  restartPoll (): void {
    if (this.timer !== null) this.schedulePoll()
  }

  private mayListen (): boolean {
    return typeof EventSource !== 'undefined' && Date.now() >= this.retryAt
  }

  private listen (): void {
    const source = new EventSource(this.eventsUrl)
    this.source = source
    // Changes between the last load and the stream opening would be missed: reload once it is open.
    source.addEventListener('open', () => {
      this.retryMs = firstRetryMs
      this.showMode('live')
      void this.onChange('connected')
    })
    source.addEventListener('change', (event) => { void this.onChange(reasonOf(event as MessageEvent<string>)) })
    source.addEventListener('error', () => {
      if (this.source !== source) return
      source.close()
      this.source = null
      this.retryAt = Date.now() + this.retryMs
      this.retryMs = Math.min(this.retryMs * 2, longestRetryMs)
      this.showMode('poll')
      this.schedulePoll()
    })
  }

  private schedulePoll (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = window.setTimeout(async () => {
      this.timer = null
      // A poll that meets an ended session (401) leaves for the login page.
      await this.onChange('poll')
      // Stopped meanwhile, or restarted (which set a timer or a stream of its own): nothing to schedule.
      if (!this.active || this.source !== null || this.timer !== null) return
      if (this.mayListen()) this.listen()
      else this.schedulePoll()
    }, pollMs)
  }
}

function reasonOf (event: MessageEvent<string>): string {
  try {
    const data: unknown = JSON.parse(event.data)
    return typeof data === 'object' && data !== null && typeof (data as { reason?: unknown }).reason === 'string'
      ? (data as { reason: string }).reason
      : 'change'
  } catch {
    return 'change'
  }
}

export function createSheetController ({ heading }: { heading: HTMLElement }): SheetController {
  const grid = byId('sheet-grid')
  const status = byId('sheet-status')
  const toggle = byId<HTMLButtonElement>('toggle-status')
  const total = byId('students-total')
  const refreshMode = byId('refresh-mode')
  const refreshNow = byId<HTMLButtonElement>('refresh-now')
  const selectMode = byId<HTMLButtonElement>('select-mode')
  const removeSelected = byId<HTMLButtonElement>('remove-selected')
  const cancelSelection = byId<HTMLButtonElement>('cancel-selection')
  const openManual = byId<HTMLButtonElement>('open-manual')
  const csv = byId<HTMLAnchorElement>('download-csv')
  const hint = byId('selection-hint')
  const listError = byId('students-error')
  const table = byId<HTMLTableElement>('students-table')
  const body = byId<HTMLTableSectionElement>('students-body')
  const empty = byId('students-empty')
  const qrButton = byId<HTMLButtonElement>('qr-button')
  const urlLink = byId<HTMLAnchorElement>('sign-in-url')
  const overlay = byId<HTMLDialogElement>('qr-overlay')

  let sheet: Sheet | null = null
  let students: Registration[] = []
  let selecting = false
  const selected = new Set<number>()
  let live: LiveUpdates | null = null
  let loading: Promise<void> | null = null
  let loadAgain = false

  const showMode = (mode: RefreshMode) => { refreshMode.textContent = refreshTexts[mode] }

  function renderSheet (current: Sheet): void {
    heading.textContent = `Class of ${current.courseUnitName}`
    byId('sheet-unit').textContent = current.courseUnitName
    byId('sheet-teacher').textContent = current.creatorName.trim() || '—'
    byId('sheet-created').textContent = formatDateTime(current.timestamp)
    byId('sheet-summary').textContent = current.summary ?? '—'
    status.textContent = current.isActive ? 'Attendance is open' : 'Attendance is closed'
    status.className = `status ${current.isActive ? 'status-open' : 'status-closed'}`
    toggle.textContent = current.isActive ? 'Close attendance' : 'Open attendance'
    toggle.className = `button ${current.isActive ? 'button-warning' : 'button-success'}`
    csv.href = `${sheetPath(current.id)}/students.csv`
    csv.setAttribute('download', `attendance-${current.id}.csv`)
    const url = current.signInUrl
    urlLink.href = url
    urlLink.textContent = url
    byId('class-code').textContent = current.id
    qrButton.replaceChildren(qrCode(url, { label: `QR code for ${url}` }))
  }

  function renderStudents (): void {
    total.textContent = `Total: ${students.length}`
    empty.hidden = students.length > 0
    table.classList.toggle('selecting', selecting)
    const present = new Set(students.map((student) => student.nmec))
    for (const nmec of selected) if (!present.has(nmec)) selected.delete(nmec)
    body.replaceChildren(...students.map(studentRow))
    updateSelectionButtons()
  }

  function studentRow (student: Registration): HTMLTableRowElement {
    const row = element('tr')
    row.dataset.nmec = String(student.nmec)
    const box = element('input', { attributes: { type: 'checkbox', 'aria-label': `Select ${student.nmec} ${student.name}` } })
    box.checked = selected.has(student.nmec)
    box.tabIndex = selecting ? 0 : -1
    box.addEventListener('change', () => setSelected(student.nmec, box.checked, row))
    const selectCell = element('td', { className: 'select-col' })
    selectCell.append(box)
    row.append(
      selectCell,
      timestampCell(student.timestamp),
      element('td', { text: String(student.nmec) }),
      element('td', { text: student.name })
    )
    row.classList.toggle('selected', box.checked)
    row.addEventListener('click', (event) => {
      if (!selecting || event.target === box) return
      box.checked = !box.checked
      setSelected(student.nmec, box.checked, row)
    })
    return row
  }

  function setSelected (nmec: number, on: boolean, row: HTMLTableRowElement): void {
    if (on) selected.add(nmec)
    else selected.delete(nmec)
    row.classList.toggle('selected', on)
    updateSelectionButtons()
  }

  function updateSelectionButtons (): void {
    selectMode.hidden = selecting
    removeSelected.hidden = !selecting
    cancelSelection.hidden = !selecting
    hint.hidden = !selecting
    removeSelected.disabled = selected.size === 0
    removeSelected.setAttribute('aria-label', `Remove students (${selected.size} selected)`)
  }

  async function loadStudents (): Promise<void> {
    // One request at a time; a change announced meanwhile triggers one more load after it.
    if (loading) {
      loadAgain = true
      return loading
    }
    loading = (async () => {
      do {
        loadAgain = false
        const id = sheet?.id
        if (!id) return
        try {
          const list = await api<Registration[]>('GET', `${sheetPath(id)}/students`)
          if (sheet?.id !== id) return
          students = list
          showMessages(listError, [])
          if (!selecting) renderStudents()
        } catch (error) {
          showMessages(listError, [`The list could not be refreshed. ${(error as ApiError).message}`])
        }
      } while (loadAgain)
    })().finally(() => { loading = null })
    return loading
  }

  async function reloadSheet (): Promise<void> {
    if (!sheet) return
    const fresh = await api<Sheet>('GET', sheetPath(sheet.id))
    sheet = fresh
    renderSheet(fresh)
    followStatus()
  }

  /** Live updates run only while the sheet is open and nobody is picking students. */
  function followStatus (): void {
    if (!live) return
    if (sheet?.isActive && !selecting) live.start()
    else {
      live.stop()
      showMode(selecting ? 'paused' : 'closed')
    }
  }

  async function onChange (reason: string): Promise<void> {
    if (reason === 'status') await reloadSheet().catch(() => {})
    await loadStudents()
  }

  refreshNow.addEventListener('click', async () => {
    live?.restartPoll()
    await busy(refreshNow, loadStudents)
  })

  toggle.addEventListener('click', async () => {
    if (!sheet) return
    const closing = sheet.isActive
    if (closing && !await confirmAction('Close attendance?', {
      text: 'Students will no longer be able to sign in. You can open it again later.',
      confirm: 'Close attendance'
    })) return
    try {
      const { isActive } = await busy(toggle, () => api<{ isActive: boolean }>('POST', `${sheetPath(sheet!.id)}/status`, { body: { status: !closing } }))
      sheet = { ...sheet, isActive }
      renderSheet(sheet)
      followStatus()
      if (isActive) void loadStudents()
      await showMessage(isActive ? 'Attendance sheet opened.' : 'Attendance sheet closed.', { tone: isActive ? 'success' : 'info' })
    } catch (error) {
      await showMessage('The attendance sheet could not be changed', { tone: 'danger', text: (error as ApiError).message })
    }
  })

  selectMode.addEventListener('click', () => {
    selecting = true
    selected.clear()
    followStatus()
    renderStudents()
    body.querySelector<HTMLInputElement>('input[type=checkbox]')?.focus()
  })

  function endSelection (): void {
    selecting = false
    selected.clear()
    renderStudents()
    followStatus()
    void loadStudents()
    selectMode.focus()
  }

  cancelSelection.addEventListener('click', endSelection)

  removeSelected.addEventListener('click', async () => {
    if (!sheet || selected.size === 0) return
    const chosen = students.filter((student) => selected.has(student.nmec))
    const count = chosen.length
    const confirmed = await confirmAction(count === 1 ? 'Remove 1 student?' : `Remove ${count} students?`, {
      text: `${chosen.map((student) => `${student.nmec} ${student.name}`).join(', ')} will be removed from this attendance sheet.`,
      confirm: 'Remove'
    })
    if (!confirmed) return
    try {
      await busy(removeSelected, () => api('DELETE', `${sheetPath(sheet!.id)}/student/deletion`, { body: { nmecs: [...selected] } }))
      endSelection()
    } catch (error) {
      showMessages(listError, [`The students could not be removed. ${(error as ApiError).message}`])
    }
  })

  qrButton.addEventListener('click', () => {
    const url = urlLink.textContent ?? ''
    byId('qr-overlay-code').replaceChildren(qrCode(url, { dark: '#ffffff', light: '#000000', label: `QR code for ${url}` }))
    byId('qr-overlay-url').textContent = url
    void openDialog(overlay)
  })
  // Anywhere on the overlay closes it, the × included.
  overlay.addEventListener('click', () => overlay.close())

  setUpManualRegistration(() => sheet, loadStudents, openManual)

  return {
    async show (id) {
      live?.stop()
      live = null
      selecting = false
      selected.clear()
      students = []
      sheet = null
      grid.hidden = true
      const [info, list] = await Promise.allSettled([
        api<Sheet>('GET', sheetPath(id)),
        api<Registration[]>('GET', `${sheetPath(id)}/students`)
      ])
      if (info.status === 'rejected') {
        const error = info.reason as ApiError
        return { outcome: error.status === 404 ? 'not-found' : 'failed', error }
      }
      if (list.status === 'rejected') {
        const error = list.reason as ApiError
        return { outcome: error.status === 403 ? 'not-yours' : error.status === 404 ? 'not-found' : 'failed', sheet: info.value, error }
      }
      sheet = info.value
      students = list.value
      renderSheet(sheet)
      renderStudents()
      showMessages(listError, [])
      grid.hidden = false
      live = new LiveUpdates(`${sheetPath(id)}/events`, onChange, showMode)
      followStatus()
      return { outcome: 'shown', sheet }
    }
  }
}

/** "dd/mm/yyyy HH:MM:SS"; narrow screens show the time alone (the date stays for screen readers). */
function timestampCell (iso: string): HTMLTableCellElement {
  const [date, time] = formatDateTime(iso, { seconds: true }).split(' ')
  const cell = element('td')
  cell.append(element('span', { className: 'date', text: `${date} ` }), time ?? '')
  return cell
}

function setUpManualRegistration (current: () => Sheet | null, reload: () => Promise<void>, opener: HTMLButtonElement): void {
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
    for (const [input, box] of [[nmecInput, nmecError], [nameInput, nameError]] as const) fieldError(input, box, undefined)
    showMessages(errors, [])
    showMessages(note, [])
    void openDialog(dialog)
    nmecInput.focus()
  })
  byId('manual-close').addEventListener('click', () => dialog.close())

  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const sheet = current()
    if (!sheet) return
    showMessages(note, [])
    showMessages(errors, [])
    const check = checkRegistration(nmecInput.value, nameInput.value)
    fieldError(nmecInput, nmecError, check.nmecError)
    fieldError(nameInput, nameError, check.nameError)
    if (!check.value) {
      (check.nmecError ? nmecInput : nameInput).focus()
      return
    }
    const { nmec, name } = check.value
    try {
      await busy(submit, () => api('POST', `${sheetPath(sheet.id)}/student/registration`, { body: { nmec, name } }))
      form.reset()
      showMessages(note, [`Student ${nmec} (${name}) registered.`])
      nmecInput.focus()
      await reload()
    } catch (error) {
      const failure = error as ApiError
      showMessages(errors, failure.status === 409 ? ['This student is already registered on this sheet.'] : failure.lines)
    }
  })
}
