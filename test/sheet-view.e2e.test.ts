import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { APIResponse, BrowserContext, Page, Route } from 'playwright-core'
import { newEmail } from './helpers/accounts.js'
import { chromiumSkipReason, visible, waitForRows } from './helpers/browser.js'
import { webUi } from './helpers/web-ui.js'

// The sheet panel (web/src/sheet-view.ts) when answers come back late and out of order: a late
// answer about a sheet, or about an older state of it, must not be drawn over what the page shows
// now, nor leave the open/close button acting on another sheet. The server is real; only the
// browser's network layer holds some answers back (page.route), and the test lets them go.

/** Answers the server gave at once, held back in the browser until the test releases them. */
class HeldAnswers {
  private readonly held: { label: string; route: Route; response: APIResponse }[] = []
  // Once released, later requests go through untouched.
  private holding = true

  constructor(private readonly labelOf: (method: string, path: string) => string | undefined) {}

  async attach(page: Page): Promise<void> {
    await page.route(
      (url) => url.pathname.startsWith('/api/attendance/sheet/'),
      async (route) => {
        const request = route.request()
        const label = this.holding ? this.labelOf(request.method(), new URL(request.url()).pathname) : undefined
        if (label === undefined) return route.fallback()
        // Asked of the server now, so the answer tells the state of this moment; delivered later.
        const response = await route.fetch()
        this.held.push({ label, route, response })
      }
    )
  }

  labels(): string[] {
    return this.held.map(({ label }) => label)
  }

  async waitFor(labels: string[], timeoutMs = 10_000): Promise<void> {
    for (const deadline = Date.now() + timeoutMs; !labels.every((label) => this.labels().includes(label));) {
      if (Date.now() > deadline)
        throw new Error(`expected held answers ${labels.join(', ')}, held ${this.labels().join(', ') || 'none'}`)
      await sleep(20)
    }
  }

  /** Delivers the answers with these labels in this order, giving the page time to act on each. */
  async release(labels: string[]): Promise<void> {
    this.holding = false
    for (const label of labels) {
      const index = this.held.findIndex((entry) => entry.label === label)
      assert.notEqual(index, -1, `no held answer ${label}`)
      const [{ route, response }] = this.held.splice(index, 1)
      await route.fulfill({ response })
      await sleep(300)
    }
  }
}

/** Asks the history page for `sheet` (of the course unit MAS), as a teacher would. */
async function showOnHistoryPage(page: Page, sheet: string) {
  await page.goto('/attendance-sheet-history.html')
  await page.locator('#history-unit option', { hasText: 'MAS' }).first().waitFor({ state: 'attached' })
  await page.getByLabel('Course unit').selectOption({ label: 'MAS' })
  await page.locator(`#schedule option[value="${sheet}"]`).waitFor({ state: 'attached' })
  await page.getByLabel('Schedule').selectOption({ value: sheet })
  await page.getByRole('button', { name: 'Show attendance sheet' }).click()
}

describe('the sheet panel under late answers', { skip: chromiumSkipReason(), timeout: 120_000 }, () => {
  const { problems, newPage } = webUi()

  /** A teacher of its own in this context (the cookie lands in it). */
  async function signUp(context: BrowserContext): Promise<void> {
    const credentials = { email: newEmail(), password: 'correct horse battery' }
    const created = await context.request.post('/api/users', {
      data: { ...credentials, firstName: 'Race', lastName: 'Teacher' }
    })
    assert.equal(created.status(), 201)
    assert.equal((await context.request.post('/api/sessions', { data: credentials })).status(), 201)
  }

  /** A sheet for MAS with one student signed in. */
  async function createSheet(
    context: BrowserContext,
    summary: string,
    student: { nmec: number; name: string }
  ): Promise<string> {
    const sheet = await context.request.post('/api/attendance/sheet/new', { data: { courseUnit: 1, summary } })
    assert.equal(sheet.status(), 201)
    const id: string = (await sheet.json()).attendanceId
    const signIn = await context.request.post(`/api/attendance/sheet/${id}/student/registration`, { data: student })
    assert.equal(signIn.status(), 201)
    return id
  }

  /** Opens or closes a sheet as another device of the same teacher would, behind the page's back. */
  async function setStatus(context: BrowserContext, id: string, open: boolean): Promise<void> {
    const answer = await context.request.post(`/api/attendance/sheet/${id}/status`, { data: { status: open } })
    assert.equal(answer.status(), 200)
    assert.equal((await answer.json()).isActive, open)
  }

  async function isActive(context: BrowserContext, id: string): Promise<boolean> {
    const answer = await context.request.get(`/api/attendance/sheet/${id}`)
    assert.equal(answer.status(), 200)
    return (await answer.json()).isActive
  }

  async function expectShown(
    page: Page,
    shown: { status: string; toggle: string; summary: string; rows: string[][] }
  ): Promise<void> {
    assert.equal(await page.locator('#sheet-status').textContent(), shown.status)
    assert.equal(await page.locator('#toggle-status').textContent(), shown.toggle)
    assert.equal(await page.locator('#sheet-summary').textContent(), shown.summary)
    const rows = await waitForRows(page, shown.rows.length)
    assert.deepEqual(
      rows.map((row) => row.slice(1)),
      shown.rows
    )
  }

  /** A teacher with sheet A (open, one student) and sheet B (closed, another student). */
  async function twoSheets(context: BrowserContext) {
    await signUp(context)
    const sheetA = await createSheet(context, 'SHEET A', { nmec: 1111, name: 'Alice Abreu' })
    const sheetB = await createSheet(context, 'SHEET B', { nmec: 2222, name: 'Bruno Borges' })
    await setStatus(context, sheetB, false)
    return { sheetA, sheetB }
  }

  test('history: a late answer about sheet A, chosen before sheet B, changes nothing of B, and the button acts on B', async () => {
    const { context, page } = await newPage()
    const { sheetA, sheetB } = await twoSheets(context)

    await showOnHistoryPage(page, sheetA)
    await visible(page.getByText('Updates live', { exact: true }))
    await expectShown(page, {
      status: 'Attendance is open',
      toggle: 'Close attendance',
      summary: 'SHEET A',
      rows: [['1111', 'Alice Abreu']]
    })

    // A's status requests (the page reloads A whenever its status changes) are answered late.
    let reloads = 0
    const held = new HeldAnswers((method, path) =>
      method === 'GET' && path === `/api/attendance/sheet/${sheetA}` ? `A${++reloads}` : undefined
    )
    await held.attach(page)
    // Another device closes A and opens it again: A is open again when its answers arrive.
    await setStatus(context, sheetA, false)
    await held.waitFor(['A1'])
    await setStatus(context, sheetA, true)
    await held.waitFor(['A2'])

    // Meanwhile the teacher chooses B, which shows at once.
    await page.getByLabel('Schedule').selectOption({ value: sheetB })
    await page.getByRole('button', { name: 'Show attendance sheet' }).click()
    await visible(page.locator('#sheet-summary').getByText('SHEET B', { exact: true }))
    await expectShown(page, {
      status: 'Attendance is closed',
      toggle: 'Open attendance',
      summary: 'SHEET B',
      rows: [['2222', 'Bruno Borges']]
    })

    await held.release(['A1', 'A2'])
    await sleep(700) // long enough for a stale answer to start live updates of A and load A's list
    await expectShown(page, {
      status: 'Attendance is closed',
      toggle: 'Open attendance',
      summary: 'SHEET B',
      rows: [['2222', 'Bruno Borges']]
    })
    assert.equal(
      await page.locator('#refresh-mode').textContent(),
      'Attendance is closed: the list no longer refreshes'
    )

    // The button opens B, and leaves A as it was.
    await page.getByRole('button', { name: 'Open attendance' }).click()
    const done = page.getByRole('dialog', { name: 'Attendance sheet opened.' })
    await visible(done)
    await done.getByRole('button', { name: 'OK' }).click()
    await visible(page.getByText('Attendance is open', { exact: true }))
    assert.equal(await isActive(context, sheetB), true, 'B was opened')
    assert.equal(await isActive(context, sheetA), true, 'A was left open')
    await expectShown(page, {
      status: 'Attendance is open',
      toggle: 'Close attendance',
      summary: 'SHEET B',
      rows: [['2222', 'Bruno Borges']]
    })
    assert.deepEqual(problems, [])
  })

  test("history: sheet A still loading when sheet B is asked for and shown: A's late answers are dropped", async () => {
    const { context, page } = await newPage()
    const { sheetA, sheetB } = await twoSheets(context)
    const held = new HeldAnswers((method, path) => {
      if (method !== 'GET') return undefined
      if (path === `/api/attendance/sheet/${sheetA}`) return 'sheet'
      if (path === `/api/attendance/sheet/${sheetA}/students`) return 'students'
      return undefined
    })
    await held.attach(page)

    await showOnHistoryPage(page, sheetA)
    await held.waitFor(['sheet', 'students'])
    // The button waits while a sheet loads, so a person cannot ask twice; a submit of the form can.
    await page.getByLabel('Schedule').selectOption({ value: sheetB })
    await page
      .locator('#history-form')
      .evaluate((form) => (form as unknown as { requestSubmit(): void }).requestSubmit())
    await visible(page.locator('#sheet-summary').getByText('SHEET B', { exact: true }))

    await held.release(['sheet', 'students'])
    await sleep(500)
    await expectShown(page, {
      status: 'Attendance is closed',
      toggle: 'Open attendance',
      summary: 'SHEET B',
      rows: [['2222', 'Bruno Borges']]
    })
    assert.equal(await page.locator('#sheet-problem').isVisible(), false)
    await page.getByRole('button', { name: 'Open attendance' }).click()
    await page.getByRole('dialog', { name: 'Attendance sheet opened.' }).getByRole('button', { name: 'OK' }).click()
    assert.equal(await isActive(context, sheetB), true, 'B was opened')
    assert.equal(await isActive(context, sheetA), true, 'A was left as it was')
    assert.deepEqual(problems, [])
  })

  test('sheet page: the answer to "Close attendance" arriving after newer news of the sheet does not roll the page back', async () => {
    const { context, page } = await newPage()
    await signUp(context)
    const sheet = await createSheet(context, 'SHEET C', { nmec: 3333, name: 'Carla Cunha' })
    await page.goto(`/attendance-sheet.html?id=${sheet}`)
    await visible(page.getByText('Updates live', { exact: true }))

    // The close and the reloads it sets off are answered by the server at once, delivered late.
    let reloads = 0
    const held = new HeldAnswers((method, path) => {
      if (method === 'POST' && path === `/api/attendance/sheet/${sheet}/status`) return 'close'
      if (method === 'GET' && path === `/api/attendance/sheet/${sheet}`) return `reload${++reloads}`
      return undefined
    })
    await held.attach(page)
    await page.getByRole('button', { name: 'Close attendance' }).click()
    await page
      .getByRole('dialog', { name: 'Close attendance?' })
      .getByRole('button', { name: 'Close attendance' })
      .click()
    // The close announces itself over the event stream: a reload that finds the sheet closed.
    await held.waitFor(['close', 'reload1'])
    // Another device opens it again: a reload that finds it open, the newest news.
    await setStatus(context, sheet, true)
    await held.waitFor(['reload2'])

    // Newest first, then the older answers, the close's own last.
    await held.release(['reload2', 'reload1', 'close'])
    const done = page.getByRole('dialog', { name: 'Attendance sheet closed.' })
    await visible(done)
    await done.getByRole('button', { name: 'OK' }).click()
    assert.equal(await isActive(context, sheet), true)
    await expectShown(page, {
      status: 'Attendance is open',
      toggle: 'Close attendance',
      summary: 'SHEET C',
      rows: [['3333', 'Carla Cunha']]
    })
    await visible(page.getByText('Updates live', { exact: true }))
    assert.deepEqual(problems, [])
  })
})
