import { api, ApiError, type CourseUnit, type Department } from './api.js'
import { busy, byId, element, markInvalid, showMessages } from './dom.js'
import { startShell } from './shell.js'

const form = byId<HTMLFormElement>('create-form')
const department = byId<HTMLSelectElement>('department')
const courseUnit = byId<HTMLSelectElement>('course-unit')
const summary = byId<HTMLInputElement>('summary')
const errors = byId('create-errors')
const submit = form.querySelector<HTMLButtonElement>('button[type=submit]')!

function fillSelect(select: HTMLSelectElement, placeholder: string, options: { value: string; label: string }[]): void {
  select.replaceChildren(
    element('option', { text: placeholder, attributes: { value: '' } }),
    ...options.map(({ value, label }) => element('option', { text: label, attributes: { value } }))
  )
}

department.addEventListener('change', async () => {
  showMessages(errors, [])
  fillSelect(courseUnit, 'Choose a course unit', [])
  const chosen = department.value
  byId('course-unit-field').hidden = chosen === ''
  byId('summary-field').hidden = chosen === ''
  if (chosen === '') return
  try {
    const units = await api<CourseUnit[]>('GET', `/api/department/${encodeURIComponent(chosen)}/course_units`)
    if (department.value !== chosen) return
    fillSelect(
      courseUnit,
      'Choose a course unit',
      units.map((unit) => ({ value: String(unit.id), label: unit.name }))
    )
  } catch (error) {
    showMessages(errors, (error as ApiError).lines)
  }
})

form.addEventListener('submit', async (event) => {
  event.preventDefault()
  markInvalid(courseUnit, false)
  if (courseUnit.value === '') {
    markInvalid(courseUnit, true)
    showMessages(errors, ['Please select a course unit.'])
    ;(department.value === '' ? department : courseUnit).focus()
    return
  }
  showMessages(errors, [])
  const text = summary.value.trim()
  try {
    const { attendanceId } = await busy(submit, () =>
      api<{ attendanceId: string }>('POST', '/api/attendance/sheet/new', {
        body: { courseUnit: Number(courseUnit.value), ...(text !== '' && { summary: text }) }
      })
    )
    location.assign(`attendance-sheet.html?id=${encodeURIComponent(attendanceId)}`)
  } catch (error) {
    showMessages(errors, (error as ApiError).lines)
  }
})

await startShell()
try {
  const departments = await api<Department[]>('GET', '/api/department/all')
  fillSelect(
    department,
    'Choose a department',
    departments.map((d) => ({
      value: String(d.id),
      label: d.initials && d.initials !== d.name ? `${d.name} (${d.initials})` : d.name
    }))
  )
} catch (error) {
  showMessages(errors, [`The departments could not be loaded. ${(error as ApiError).message}`])
}
