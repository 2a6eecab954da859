import { Coalescer } from '../../src/platform/coalescer.js'
/**
 * One attendance sheet as its creator sees it: what the page knows of it (one state object), the
 * requests that change it, and the view (sheet-view.ts) that draws it. Used by attendance-sheet.html
 * and the history.
 *
 * Answers come back late and in any order, and meanwhile the history may show another sheet, or
 * newer news of this one may have arrived. So every request remembers what it started from and,
 * once answered, is drawn only if that is still current: the same showing of a sheet (`generation`)
 * and, for the sheet's status, no newer status already drawn (`statusShown`).
 */
import { api, ApiError, sheetPath, type Registration, type Sheet } from './api.js'
import { byId } from './dom.js'
import { LiveUpdates } from './live-updates.js'
import { setUpManualRegistration } from './manual-registration.js'
import { confirmAction, showMessage } from './modal.js'
import { SheetView } from './sheet-view.js'

/** 'superseded': another sheet was asked for before this one came, and is shown instead. */
export type SheetOutcome = 'shown' | 'not-yours' | 'not-found' | 'failed' | 'superseded'

export interface SheetController {
  /** Shows a sheet (replacing the one shown before); any outcome but 'shown' shows nothing of it. */
  show(id: string): Promise<{ outcome: SheetOutcome; sheet?: Sheet; error?: ApiError }>
}

/** All the page knows; the view draws from it, and nothing is read back from the page. */
interface SheetState {
  /** Counts the showings of sheets: an answer asked for under an earlier one is dropped. */
  generation: number
  sheet: Sheet | null
  students: Registration[]
  selecting: boolean
  selected: Set<number>
  /** Status requests (reloads and the button's) are numbered as sent; an answer older than the one drawn is stale. */
  statusAsked: number
  statusShown: number
  /** The shown sheet's list loads, one at a time: the changes announced meanwhile share the next one. */
  listLoads: Coalescer<() => void> | null
  live: LiveUpdates | null
}

export function createSheetController({ heading }: { heading: HTMLElement }): SheetController {
  const view = new SheetView(heading)
  const state: SheetState = {
    generation: 0,
    sheet: null,
    students: [],
    selecting: false,
    selected: new Set(),
    statusAsked: 0,
    statusShown: 0,
    listLoads: null,
    live: null
  }

  const current = (generation: number) => state.generation === generation

  function renderStudents(): void {
    // Students gone from the list cannot stay selected.
    const present = new Set(state.students.map((student) => student.nmec))
    for (const nmec of state.selected) if (!present.has(nmec)) state.selected.delete(nmec)
    view.renderStudents(state.students, state)
  }

  /** Draws a status answer unless the page moved on meanwhile; true when drawn. */
  function showStatus(generation: number, asked: number, sheet: Sheet): boolean {
    if (!current(generation) || asked < state.statusShown) return false
    state.sheet = sheet
    state.statusShown = asked
    view.renderSheet(sheet)
    followStatus()
    return true
  }

  /** Live updates run only while the sheet is open and nobody is picking students. */
  function followStatus(): void {
    if (!state.live) return
    if (state.sheet?.isActive && !state.selecting) state.live.start()
    else {
      state.live.stop()
      view.showRefreshMode(state.selecting ? 'paused' : 'closed')
    }
  }

  function loadStudents(generation = state.generation): Promise<void> {
    if (!current(generation)) return Promise.resolve()
    const settle = (done: Array<() => void>) => {
      for (const resolve of done) resolve()
    }
    state.listLoads ??= new Coalescer<() => void>(async (done) => {
      if (current(generation)) await loadStudentsOnce(generation)
      settle(done)
    }, settle)
    const loads = state.listLoads
    return new Promise((resolve) => loads.add(resolve))
  }

  async function loadStudentsOnce(generation: number): Promise<void> {
    const id = state.sheet?.id
    if (!id) return
    try {
      const list = await api<Registration[]>('GET', `${sheetPath(id)}/students`)
      if (!current(generation)) return
      state.students = list
      view.showListError([])
      if (!state.selecting) renderStudents()
    } catch (error) {
      if (current(generation)) view.showListError([`The list could not be refreshed. ${(error as ApiError).message}`])
    }
  }

  async function reloadSheet(generation: number): Promise<void> {
    const id = state.sheet?.id
    if (!id || !current(generation)) return
    const asked = ++state.statusAsked
    showStatus(generation, asked, await api<Sheet>('GET', sheetPath(id)))
  }

  async function onChange(generation: number, reason: string): Promise<void> {
    if (reason === 'status') await reloadSheet(generation).catch(() => {})
    await loadStudents(generation)
  }

  async function toggleStatus(): Promise<void> {
    const { sheet, generation } = state
    if (!sheet) return
    const closing = sheet.isActive
    if (
      closing &&
      !(await confirmAction('Close attendance?', {
        text: 'Students will no longer be able to sign in. You can open it again later.',
        confirm: 'Close attendance'
      }))
    )
      return
    // The question was about this sheet: if another is shown now, its answer means nothing.
    if (!current(generation)) return
    const asked = ++state.statusAsked
    try {
      const { isActive } = await view.busy('toggle', () =>
        api<{ isActive: boolean }>('POST', `${sheetPath(sheet.id)}/status`, { body: { status: !closing } })
      )
      if (!current(generation)) return
      // Newer news of the sheet (another device opened or closed it since) stays drawn.
      if (showStatus(generation, asked, { ...(state.sheet ?? sheet), isActive }) && isActive)
        void loadStudents(generation)
      await showMessage(isActive ? 'Attendance sheet opened.' : 'Attendance sheet closed.', {
        tone: isActive ? 'success' : 'info'
      })
    } catch (error) {
      if (current(generation))
        await showMessage('The attendance sheet could not be changed', {
          tone: 'danger',
          text: (error as ApiError).message
        })
    }
  }

  function startSelecting(): void {
    state.selecting = true
    state.selected.clear()
    followStatus()
    renderStudents()
    view.focusFirstStudent()
  }

  function endSelection(): void {
    state.selecting = false
    state.selected.clear()
    renderStudents()
    followStatus()
    void loadStudents()
    view.focusSelectMode()
  }

  function flip(nmec: number): void {
    // Outside selection a click on a row selects nothing.
    const on = state.selecting && !state.selected.has(nmec)
    if (on) state.selected.add(nmec)
    else state.selected.delete(nmec)
    view.markSelected(nmec, on)
    view.renderSelection(state)
  }

  async function removeSelected(): Promise<void> {
    const { sheet, generation } = state
    if (!sheet || state.selected.size === 0) return
    const chosen = state.students.filter((student) => state.selected.has(student.nmec))
    const count = chosen.length
    const confirmed = await confirmAction(count === 1 ? 'Remove 1 student?' : `Remove ${count} students?`, {
      text: `${chosen.map((student) => `${student.nmec} ${student.name}`).join(', ')} will be removed from this attendance sheet.`,
      confirm: 'Remove'
    })
    if (!confirmed || !current(generation)) return
    try {
      await view.busy('remove', () =>
        api('DELETE', `${sheetPath(sheet.id)}/student/deletion`, { body: { nmecs: [...state.selected] } })
      )
      if (current(generation)) endSelection()
    } catch (error) {
      if (current(generation)) view.showListError([`The students could not be removed. ${(error as ApiError).message}`])
    }
  }

  view.bind({
    toggleStatus: () => {
      void toggleStatus()
    },
    refreshNow: () => {
      state.live?.restartPoll()
      void view.busy('refresh', () => loadStudents())
    },
    startSelecting,
    cancelSelection: endSelection,
    removeSelected: () => {
      void removeSelected()
    },
    flip,
    showQrFullScreen: () => {
      if (state.sheet) view.showQrFullScreen(state.sheet.signInUrl)
    }
  })

  setUpManualRegistration(
    {
      hasSheet: () => state.sheet !== null,
      register: async (student) => {
        const id = state.sheet?.id
        if (id) await api('POST', `${sheetPath(id)}/student/registration`, { body: student })
      },
      reloadList: () => loadStudents()
    },
    byId<HTMLButtonElement>('open-manual')
  )

  /** Leaves the sheet shown: its live updates stop, and answers still on their way for it are dropped. */
  function leave(): number {
    state.live?.stop()
    state.live = null
    state.listLoads = null
    state.selecting = false
    state.selected.clear()
    state.students = []
    state.sheet = null
    view.hideSheet()
    return ++state.generation
  }

  function enter(generation: number, sheet: Sheet, students: Registration[]): void {
    state.sheet = sheet
    state.students = students
    view.renderSheet(sheet)
    renderStudents()
    view.showListError([])
    view.showSheet()
    state.live = new LiveUpdates(
      `${sheetPath(sheet.id)}/events`,
      (reason) => onChange(generation, reason),
      (mode) => {
        if (current(generation)) view.showRefreshMode(mode)
      }
    )
    followStatus()
  }

  return {
    async show(id) {
      const generation = leave()
      const [info, list] = await Promise.allSettled([
        api<Sheet>('GET', sheetPath(id)),
        api<Registration[]>('GET', `${sheetPath(id)}/students`)
      ])
      if (!current(generation)) return { outcome: 'superseded' }
      if (info.status === 'rejected') {
        const error = info.reason as ApiError
        return { outcome: error.status === 404 ? 'not-found' : 'failed', error }
      }
      if (list.status === 'rejected') {
        const error = list.reason as ApiError
        return {
          outcome: error.status === 403 ? 'not-yours' : error.status === 404 ? 'not-found' : 'failed',
          sheet: info.value,
          error
        }
      }
      enter(generation, info.value, list.value)
      return { outcome: 'shown', sheet: info.value }
    }
  }
}
