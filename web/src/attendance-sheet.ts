import { byId, element } from './dom.js'
import { startShell } from './shell.js'
import { createSheetController } from './sheet-controller.js'

const heading = byId('sheet-heading')
const problem = byId('sheet-problem')
byId('sheet-grid').hidden = true

function showProblem(message: string, link: { href: string; text: string }): void {
  const next = element('p')
  next.append(element('a', { text: link.text, attributes: { href: link.href } }))
  problem.replaceChildren(element('p', { text: message }), next)
  problem.hidden = false
}

await startShell()
const id = new URLSearchParams(location.search).get('id') ?? ''
if (id === '') {
  showProblem('No attendance sheet was chosen.', {
    href: 'attendance-sheet-history.html',
    text: 'Consult your attendance sheets'
  })
} else {
  const { outcome, sheet, error } = await createSheetController({ heading }).show(id)
  if (sheet) document.title = `Class of ${sheet.courseUnitName} · Attendance`
  if (outcome === 'not-yours') {
    heading.textContent = sheet ? `Class of ${sheet.courseUnitName}` : 'Attendance sheet'
    showProblem('This attendance sheet is not yours.', {
      href: 'index.html',
      text: 'Create an attendance sheet of your own'
    })
  } else if (outcome === 'not-found') {
    showProblem('This attendance sheet does not exist.', {
      href: 'attendance-sheet-history.html',
      text: 'Consult your attendance sheets'
    })
  } else if (outcome === 'failed') {
    showProblem(error?.message ?? 'The attendance sheet could not be loaded.', {
      href: location.pathname + location.search,
      text: 'Try again'
    })
  }
}
