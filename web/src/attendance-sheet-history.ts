import { api, ApiError, type CourseUnit, type SheetSummary } from './api.js'
import { busy, byId, element, formatDateTime, markInvalid, showMessages } from './dom.js'
import { startShell } from './shell.js'
import { createSheetController } from './sheet-controller.js'

const form = byId<HTMLFormElement>('history-form')
const unit = byId<HTMLSelectElement>('history-unit')
const schedule = byId<HTMLSelectElement>('schedule')
const errors = byId('history-errors')
const emptyBox = byId('history-empty')
const section = byId('sheet-section')
const problem = byId('sheet-problem')
const submit = form.querySelector<HTMLButtonElement>('button[type=submit]')!
const sheetView = createSheetController({ heading: byId('sheet-heading') })
byId('sheet-grid').hidden = true

function showEmpty(text: string | null): void {
  byId('history-empty-text').textContent = text ?? ''
  emptyBox.hidden = text === null
}

function options(select: HTMLSelectElement, placeholder: string, items: { value: string; label: string }[]): void {
  select.replaceChildren(
    element('option', { text: placeholder, attributes: { value: '' } }),
    ...items.map(({ value, label }) => element('option', { text: label, attributes: { value } }))
  )
}

const scheduleLabel = (sheet: SheetSummary) =>
  `${sheet.summary ?? 'No summary'} | ${formatDateTime(sheet.registerTimestamp)}`

unit.addEventListener('change', async () => {
  showMessages(errors, [])
  showEmpty(null)
  options(schedule, 'Choose a schedule', [])
  byId('schedule-field').hidden = true
  const chosen = unit.value
  if (chosen === '') return
  try {
    const { attendances } = await api<{ attendances: SheetSummary[] }>(
      'GET',
      `/api/attendance/sheets/${encodeURIComponent(chosen)}`
    )
    if (unit.value !== chosen) return
    if (attendances.length === 0) {
      showEmpty('No attendance sheets for this course unit.')
      return
    }
    options(
      schedule,
      'Choose a schedule',
      attendances.map((sheet) => ({ value: sheet.id, label: scheduleLabel(sheet) }))
    )
    byId('schedule-field').hidden = false
  } catch (error) {
    showMessages(errors, (error as ApiError).lines)
  }
})

form.addEventListener('submit', async (event) => {
  event.preventDefault()
  markInvalid(schedule, false)
  if (schedule.value === '') {
    markInvalid(schedule, true)
    showMessages(errors, ['Please select a schedule.'])
    ;(unit.value === '' ? unit : schedule).focus()
    return
  }
  showMessages(errors, [])
  problem.hidden = true
  section.hidden = false
  const { outcome, error } = await busy(submit, () => sheetView.show(schedule.value))
  // A sheet chosen after this one is shown instead, and says so itself.
  if (outcome === 'superseded') return
  if (outcome !== 'shown') {
    showMessages(
      problem,
      outcome === 'not-yours'
        ? ['This attendance sheet is not yours.']
        : (error?.lines ?? ['The attendance sheet could not be loaded.'])
    )
  }
  section.scrollIntoView({
    behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth',
    block: 'start'
  })
})

await startShell()
try {
  const units = await api<CourseUnit[]>('GET', '/api/course_units/my')
  options(
    unit,
    'Choose a course unit',
    units.map((u) => ({ value: String(u.id), label: u.name }))
  )
  if (units.length === 0) showEmpty('You have not created any attendance sheets yet.')
} catch (error) {
  showMessages(errors, [`Your course units could not be loaded. ${(error as ApiError).message}`])
}
