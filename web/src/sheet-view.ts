/**
 * The DOM of one attendance sheet as its creator sees it (web/partials/sheet.html): details, QR code,
 * open/close, the list of students and its selection. It draws what it is given and reports what the
 * teacher does; it keeps no state and fetches nothing (sheet-controller.ts does both).
 */
import type { Registration, Sheet } from './api.js'
import { sheetPath } from './api.js'
import { busy, byId, element, formatDateTime, showMessages } from './dom.js'
import type { RefreshMode } from './live-updates.js'
import { openDialog } from './modal.js'
import { qrCode } from './qr.js'

const refreshTexts: Record<RefreshMode, string> = {
  live: 'Updates live',
  poll: 'Refreshes every 15 s',
  paused: 'Refresh paused while you select students',
  closed: 'Attendance is closed: the list no longer refreshes'
}

/** What the teacher does on the sheet; the view only reports it. */
export interface SheetActions {
  toggleStatus(): void
  refreshNow(): void
  startSelecting(): void
  cancelSelection(): void
  removeSelected(): void
  /** A student's box or row was clicked: select it, or unselect it. */
  flip(nmec: number): void
  showQrFullScreen(): void
}

export type BusyButton = 'toggle' | 'refresh' | 'remove'

export interface Selection {
  selecting: boolean
  selected: ReadonlySet<number>
}

export class SheetView {
  private readonly grid = byId('sheet-grid')
  private readonly status = byId('sheet-status')
  private readonly toggle = byId<HTMLButtonElement>('toggle-status')
  private readonly total = byId('students-total')
  private readonly refreshMode = byId('refresh-mode')
  private readonly refreshNow = byId<HTMLButtonElement>('refresh-now')
  private readonly selectMode = byId<HTMLButtonElement>('select-mode')
  private readonly removeSelected = byId<HTMLButtonElement>('remove-selected')
  private readonly cancelSelection = byId<HTMLButtonElement>('cancel-selection')
  private readonly csv = byId<HTMLAnchorElement>('download-csv')
  private readonly hint = byId('selection-hint')
  private readonly listError = byId('students-error')
  private readonly table = byId<HTMLTableElement>('students-table')
  private readonly body = byId<HTMLTableSectionElement>('students-body')
  private readonly empty = byId('students-empty')
  private readonly qrButton = byId<HTMLButtonElement>('qr-button')
  private readonly urlLink = byId<HTMLAnchorElement>('sign-in-url')
  private readonly overlay = byId<HTMLDialogElement>('qr-overlay')
  /** Rows by student number, so one selection change redraws one row. */
  private readonly rows = new Map<number, { row: HTMLTableRowElement; box: HTMLInputElement }>()
  private actions: SheetActions | null = null

  constructor(private readonly heading: HTMLElement) {
    // Anywhere on the overlay closes it, the × included.
    this.overlay.addEventListener('click', () => this.overlay.close())
  }

  bind(actions: SheetActions): void {
    this.actions = actions
    this.toggle.addEventListener('click', () => actions.toggleStatus())
    this.refreshNow.addEventListener('click', () => actions.refreshNow())
    this.selectMode.addEventListener('click', () => actions.startSelecting())
    this.cancelSelection.addEventListener('click', () => actions.cancelSelection())
    this.removeSelected.addEventListener('click', () => actions.removeSelected())
    this.qrButton.addEventListener('click', () => actions.showQrFullScreen())
  }

  hideSheet(): void {
    this.grid.hidden = true
  }

  showSheet(): void {
    this.grid.hidden = false
  }

  renderSheet(sheet: Sheet): void {
    this.heading.textContent = `Class of ${sheet.courseUnitName}`
    byId('sheet-unit').textContent = sheet.courseUnitName
    byId('sheet-teacher').textContent = sheet.creatorName.trim() || '—'
    byId('sheet-created').textContent = formatDateTime(sheet.timestamp)
    byId('sheet-summary').textContent = sheet.summary ?? '—'
    this.renderStatus(sheet.isActive)
    this.csv.href = `${sheetPath(sheet.id)}/students.csv`
    this.csv.setAttribute('download', `attendance-${sheet.id}.csv`)
    const url = sheet.signInUrl
    this.urlLink.href = url
    this.urlLink.textContent = url
    byId('class-code').textContent = sheet.id
    this.qrButton.replaceChildren(qrCode(url, { label: `QR code for ${url}` }))
  }

  private renderStatus(open: boolean): void {
    this.status.textContent = open ? 'Attendance is open' : 'Attendance is closed'
    this.status.className = `status ${open ? 'status-open' : 'status-closed'}`
    this.toggle.textContent = open ? 'Close attendance' : 'Open attendance'
    this.toggle.className = `button ${open ? 'button-warning' : 'button-success'}`
  }

  renderStudents(students: Registration[], selection: Selection): void {
    this.total.textContent = `Total: ${students.length}`
    this.empty.hidden = students.length > 0
    this.table.classList.toggle('selecting', selection.selecting)
    this.rows.clear()
    this.body.replaceChildren(...students.map((student) => this.studentRow(student, selection)))
    this.renderSelection(selection)
  }

  private studentRow(student: Registration, { selecting, selected }: Selection): HTMLTableRowElement {
    const row = element('tr')
    row.dataset.nmec = String(student.nmec)
    const box = element('input', {
      attributes: { type: 'checkbox', 'aria-label': `Select ${student.nmec} ${student.name}` }
    })
    box.tabIndex = selecting ? 0 : -1
    box.addEventListener('change', () => this.actions?.flip(student.nmec))
    const selectCell = element('td', { className: 'select-col' })
    selectCell.append(box)
    row.append(
      selectCell,
      timestampCell(student.timestamp),
      element('td', { text: String(student.nmec) }),
      element('td', { text: student.name })
    )
    // The box reports its own clicks; a click anywhere else on the row stands for one on the box.
    row.addEventListener('click', (event) => {
      if (event.target !== box) this.actions?.flip(student.nmec)
    })
    this.rows.set(student.nmec, { row, box })
    this.markSelected(student.nmec, selected.has(student.nmec))
    return row
  }

  /** Draws one student as selected or not, whatever its box says now. */
  markSelected(nmec: number, on: boolean): void {
    const drawn = this.rows.get(nmec)
    if (!drawn) return
    drawn.box.checked = on
    drawn.row.classList.toggle('selected', on)
  }

  renderSelection({ selecting, selected }: Selection): void {
    this.selectMode.hidden = selecting
    this.removeSelected.hidden = !selecting
    this.cancelSelection.hidden = !selecting
    this.hint.hidden = !selecting
    this.removeSelected.disabled = selected.size === 0
    this.removeSelected.setAttribute('aria-label', `Remove students (${selected.size} selected)`)
  }

  showRefreshMode(mode: RefreshMode): void {
    this.refreshMode.textContent = refreshTexts[mode]
  }

  showListError(lines: string[]): void {
    showMessages(this.listError, lines)
  }

  focusFirstStudent(): void {
    this.body.querySelector<HTMLInputElement>('input[type=checkbox]')?.focus()
  }

  focusSelectMode(): void {
    this.selectMode.focus()
  }

  /** Disables a button while its request runs, so a double click sends one request. */
  busy<T>(button: BusyButton, work: () => Promise<T>): Promise<T> {
    const target = { toggle: this.toggle, refresh: this.refreshNow, remove: this.removeSelected }[button]
    return busy(target, work)
  }

  showQrFullScreen(url: string): void {
    byId('qr-overlay-code').replaceChildren(
      qrCode(url, { dark: '#ffffff', light: '#000000', label: `QR code for ${url}` })
    )
    byId('qr-overlay-url').textContent = url
    void openDialog(this.overlay)
  }
}

/** "dd/mm/yyyy HH:MM:SS"; narrow screens show the time alone (the date stays for screen readers). */
function timestampCell(iso: string): HTMLTableCellElement {
  const [date, time] = formatDateTime(iso, { seconds: true }).split(' ')
  const cell = element('td')
  cell.append(element('span', { className: 'date', text: `${date} ` }), time ?? '')
  return cell
}
