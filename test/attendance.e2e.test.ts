import assert from 'node:assert/strict'
import { mkdir, readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import { before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { BrowserContext, Page } from 'playwright-core'
import { newEmail } from './helpers/accounts.js'
import { chromiumSkipReason, gone, visible, waitForRows } from './helpers/browser.js'
import { projectRoot } from './helpers/servers.js'
import { webUi } from './helpers/web-ui.js'

// docs/attendance.md §7, the acceptance scenario, as a teacher and a student would live it: Debian's
// Chromium driven by playwright-core against `start` (two node:cluster workers, round robin).

const screenshots = path.join(projectRoot, 'test-results')
const sheetUrl = /\/attendance-sheet\.html\?id=([2-9A-HJ-NP-Za-km-z]{6})$/

/** The whole page from the top (a sticky top bar would otherwise be drawn where the page was scrolled to). */
async function screenshot(page: Page, name: string) {
  await page.evaluate('window.scrollTo(0, 0)')
  await page.screenshot({ path: path.join(screenshots, name), fullPage: true })
}

describe(
  'attendance web UI, end to end (docs/attendance.md §7)',
  { skip: chromiumSkipReason(), timeout: 240_000 },
  () => {
    const ui = webUi()
    const { problems, newPage } = ui

    before(() => mkdir(screenshots, { recursive: true }))

    test('a teacher runs a lesson from registration to logout while a student signs in from a phone', async (t) => {
      const { page: teacher } = await newPage()
      const { page: student } = await newPage({
        viewport: { width: 390, height: 844 },
        deviceScaleFactor: 2,
        isMobile: true,
        hasTouch: true
      })
      const email = newEmail()
      const password = 'correct horse battery'
      let sheetId = ''
      let signInLink = ''

      await t.test('1. /index.html without a session leads to the login page', async () => {
        await teacher.goto('/index.html')
        await teacher.waitForURL(/\/login\.html/)
        await visible(teacher.getByRole('heading', { name: 'Login' }))
      })

      await t.test('2. an empty registration lists the name, email and password messages', async () => {
        await teacher.getByRole('link', { name: 'Register' }).click()
        await teacher.waitForURL(/\/register\.html$/)
        await teacher.getByRole('button', { name: 'Register' }).click()
        const errors = teacher.locator('#register-errors')
        await visible(errors)
        for (const message of [
          'First name needs at least 3 characters!',
          'Last name needs at least 3 characters!',
          'Invalid email!',
          'Password needs at least 8 characters!'
        ]) {
          await visible(errors.getByText(message, { exact: true }))
        }
        assert.equal(await teacher.getByLabel('Email').getAttribute('aria-invalid'), 'true')
      })

      await t.test(
        '3. a different repeat is refused; fixed, the account is made and the create page greets "First Last"',
        async () => {
          await teacher.getByLabel('First name').fill('Teresa')
          await teacher.getByLabel('Last name').fill('Tavares')
          await teacher.getByLabel('Email').fill(email)
          await teacher.getByLabel('Password', { exact: true }).fill(password)
          await teacher.getByLabel('Repeat password').fill(`${password}!`)
          await teacher.getByRole('button', { name: 'Register' }).click()
          await visible(teacher.getByText('Passwords do not match!', { exact: true }))
          assert.equal(await teacher.locator('#register-errors p').count(), 1)

          await teacher.getByLabel('Repeat password').fill(password)
          await teacher.getByRole('button', { name: 'Register' }).click()
          const dialog = teacher.getByRole('dialog', { name: 'Registration complete' })
          await visible(dialog)
          await dialog.getByRole('button', { name: 'Create an attendance sheet' }).click()
          await teacher.waitForURL(/\/index\.html$/)
          await visible(teacher.locator('#user-name').getByText('Teresa Tavares', { exact: true }))
        }
      )

      await t.test(
        '4. logout leads to login; a wrong password is "Invalid login!"; the right one opens the create page',
        async () => {
          await teacher.getByRole('button', { name: /Teresa Tavares/ }).click()
          await teacher.getByRole('button', { name: 'Logout' }).click()
          await teacher.waitForURL(/\/login\.html$/)

          await teacher.getByLabel('Email').fill(email)
          await teacher.getByLabel('Password').fill('not the password')
          await teacher.getByRole('button', { name: 'Login' }).click()
          await visible(teacher.getByText('Invalid login!', { exact: true }))
          assert.equal(await teacher.getByLabel('Email').getAttribute('aria-invalid'), 'true')
          assert.equal(await teacher.getByLabel('Password').getAttribute('aria-invalid'), 'true')

          await teacher.getByLabel('Password').fill(password)
          await teacher.getByRole('button', { name: 'Login' }).click()
          await teacher.waitForURL(/\/index\.html$/)
          await visible(teacher.getByRole('heading', { name: 'Create attendance sheet' }))
        }
      )

      await t.test('5. creating with nothing chosen asks for a course unit', async () => {
        await teacher.getByRole('button', { name: 'Create attendance sheet' }).click()
        await visible(teacher.getByText('Please select a course unit.', { exact: true }))
      })

      await t.test(
        '6. DETI, PI, "tp1" opens the sheet page: its QR code, sign-in URL, open status and an empty list',
        async () => {
          await teacher.getByLabel('Department').selectOption({ label: 'DETI' })
          await teacher.locator('#course-unit option', { hasText: 'PI' }).first().waitFor({ state: 'attached' })
          await teacher.getByLabel('Course unit').selectOption({ label: 'PI' })
          assert.equal(await teacher.getByLabel('Summary').getAttribute('placeholder'), 'TP1, P3, T2, ...')
          await teacher.getByLabel('Summary').fill('tp1')
          await teacher.getByRole('button', { name: 'Create attendance sheet' }).click()
          await teacher.waitForURL(sheetUrl)
          sheetId = sheetUrl.exec(teacher.url())![1]

          await visible(teacher.getByRole('heading', { name: 'Class of PI', level: 1 }))
          await visible(teacher.getByRole('button', { name: 'Close attendance' }))
          await visible(teacher.locator('#qr-button svg'))
          signInLink = (await teacher.locator('#sign-in-url').textContent()) ?? ''
          assert.equal(signInLink, `${ui.url}/reg.html?id=${sheetId}`)
          assert.ok(signInLink.endsWith(`reg.html?id=${sheetId}`))
          await visible(teacher.getByText('Total: 0', { exact: true }))
          await visible(teacher.locator('#sheet-summary').getByText('TP1', { exact: true }))
          await visible(teacher.locator('#sheet-teacher').getByText('Teresa Tavares', { exact: true }))
          // The server-sent events stream is open: the list follows the sheet without polling.
          await visible(teacher.getByText('Updates live', { exact: true }))
        }
      )

      await t.test('7. the QR code opens full screen and "×" closes it', async () => {
        await teacher.locator('#qr-button').click()
        const overlay = teacher.getByRole('dialog', { name: /QR code/ })
        await visible(overlay)
        await visible(overlay.locator('svg'))
        assert.equal(await overlay.locator('#qr-overlay-url').textContent(), signInLink)
        await teacher.screenshot({ path: path.join(screenshots, 'attendance-qr-full-screen.png') })
        await overlay.getByRole('button', { name: 'Close' }).click()
        await gone(overlay)
      })

      await t.test('8. the student opens the link, gets both messages for an empty form, then signs in', async () => {
        await student.goto(signInLink)
        await visible(student.getByRole('heading', { name: 'Class of PI' }))
        await visible(student.locator('#class-unit').getByText('PI', { exact: true }))
        await visible(student.locator('#class-teacher').getByText('Teresa Tavares', { exact: true }))

        await student.getByRole('button', { name: 'Register attendance' }).click()
        await visible(student.getByText('Enter the student number!', { exact: true }))
        await visible(student.getByText('Name needs at least 5 characters!', { exact: true }))

        await student.getByLabel('Student number').fill('98765')
        await student.getByLabel('Name').fill('Maria Silva')
        await student.getByRole('button', { name: 'Register attendance' }).click()
        const dialog = student.getByRole('dialog', { name: 'Attendance recorded.' })
        await visible(dialog)
        await dialog.getByRole('button', { name: 'OK' }).click()
        await gone(dialog)
        assert.equal(await student.getByRole('button', { name: 'Register attendance' }).isDisabled(), true)
        await screenshot(student, 'attendance-student.png')
      })

      await t.test("the sign-in reaches the teacher's page by itself, with no reload and no click", async () => {
        // Well inside the 15 s poll period: it came over the event stream, from whichever worker.
        const rows = await waitForRows(teacher, 1, 8_000)
        assert.deepEqual(
          rows.map((row) => row.slice(1)),
          [['98765', 'Maria Silva']]
        )
      })

      await t.test('9. the same sign-in again: "You are already registered on this sheet."', async () => {
        await student.reload()
        await student.getByLabel('Student number').fill('98765')
        await student.getByLabel('Name').fill('Maria Silva')
        await student.getByRole('button', { name: 'Register attendance' }).click()
        await visible(student.getByText('You are already registered on this sheet.', { exact: true }))
      })

      await t.test('10. "Refresh now" shows 98765 Maria Silva and "Total: 1"', async () => {
        await teacher.getByRole('button', { name: 'Refresh now' }).click()
        await visible(teacher.getByText('Total: 1', { exact: true }))
        const rows = await waitForRows(teacher, 1)
        assert.deepEqual(rows[0].slice(1), ['98765', 'Maria Silva'])
        assert.match(rows[0][0], /^\d\d\/\d\d\/\d{4} \d\d:\d\d:\d\d$/)
      })

      await t.test('11. a manual sign-in of 12345 "Joao Costa" is confirmed and makes two rows', async () => {
        await teacher.getByRole('button', { name: 'Register a student manually' }).click()
        const dialog = teacher.getByRole('dialog', { name: 'Register a student manually' })
        await visible(dialog)
        await dialog.getByLabel('Student number').fill('12345')
        await dialog.getByLabel('Name').fill('Joao Costa')
        await dialog.getByRole('button', { name: 'Register attendance' }).click()
        await visible(dialog.getByText('Student 12345 (Joao Costa) registered.', { exact: true }))
        assert.equal(await dialog.getByLabel('Student number').inputValue(), '', 'the fields are cleared')
        await dialog.getByRole('button', { name: 'Close' }).click()
        await gone(dialog)
        const rows = await waitForRows(teacher, 2)
        assert.deepEqual(
          rows.map((row) => row.slice(1)),
          [
            ['98765', 'Maria Silva'],
            ['12345', 'Joao Costa']
          ],
          'in sign-in order'
        )
        await visible(teacher.getByText('Total: 2', { exact: true }))
      })

      await t.test('12. selecting 12345 and removing it, after a confirmation, leaves one row', async () => {
        await teacher.getByRole('button', { name: 'Select students to remove' }).click()
        await visible(teacher.getByText('Refresh paused while you select students'))
        await teacher.locator('#students-body tr', { hasText: '12345' }).click()
        await teacher.getByRole('button', { name: /^Remove students/ }).click()
        const confirm = teacher.getByRole('dialog', { name: 'Remove 1 student?' })
        await visible(confirm)
        await visible(confirm.getByText('12345 Joao Costa will be removed from this attendance sheet.'))
        await confirm.getByRole('button', { name: 'Remove' }).click()
        const rows = await waitForRows(teacher, 1)
        assert.deepEqual(rows[0].slice(1), ['98765', 'Maria Silva'])
        await visible(teacher.getByText('Total: 1', { exact: true }))
        await visible(teacher.getByText('Updates live', { exact: true }))
        await screenshot(teacher, 'attendance-teacher-sheet.png')
      })

      await t.test('13. "Download CSV" gives a file holding 98765', async () => {
        const [download] = await Promise.all([
          teacher.waitForEvent('download'),
          teacher.getByRole('link', { name: 'Download CSV' }).click()
        ])
        assert.equal(download.suggestedFilename(), `attendance-${sheetId}.csv`)
        const csv = await readFile(await download.path(), 'utf8')
        const lines = csv.trim().split(/\r?\n/)
        assert.equal(lines[0], 'Timestamp,Student number,Name')
        assert.equal(lines.length, 2)
        assert.match(lines[1], /,98765,Maria Silva$/)
      })

      await t.test(
        '14. "Close attendance", confirmed, closes the sheet; the button becomes "Open attendance"',
        async () => {
          await teacher.getByRole('button', { name: 'Close attendance' }).click()
          const confirm = teacher.getByRole('dialog', { name: 'Close attendance?' })
          await visible(confirm)
          await confirm.getByRole('button', { name: 'Close attendance' }).click()
          const done = teacher.getByRole('dialog', { name: 'Attendance sheet closed.' })
          await visible(done)
          await done.getByRole('button', { name: 'OK' }).click()
          await visible(teacher.getByRole('button', { name: 'Open attendance' }))
          await visible(teacher.getByText('Attendance is closed', { exact: true }))
        }
      )

      await t.test('15. the student reloads: the closed message and no form', async () => {
        await student.reload()
        await visible(
          student.getByText('This attendance sheet is closed; registration is not possible.', { exact: true })
        )
        assert.equal(await student.getByLabel('Student number').isVisible(), false)
        assert.equal(await student.getByRole('button', { name: 'Register attendance' }).isVisible(), false)
      })

      await t.test('16. the history lists "TP1 | …" under PI and shows the closed sheet with its row', async () => {
        await teacher.getByRole('link', { name: 'Consult attendance sheets' }).click()
        await teacher.waitForURL(/\/attendance-sheet-history\.html$/)
        await teacher.getByRole('button', { name: 'Show attendance sheet' }).click()
        await visible(teacher.getByText('Please select a schedule.', { exact: true }))
        await teacher.locator('#history-unit option', { hasText: 'PI' }).first().waitFor({ state: 'attached' })
        await teacher.getByLabel('Course unit').selectOption({ label: 'PI' })
        const option = teacher.locator('#schedule option', { hasText: /^TP1 \| \d\d\/\d\d\/\d{4} \d\d:\d\d$/ })
        await option.waitFor({ state: 'attached' })
        await teacher.getByLabel('Schedule').selectOption({ value: sheetId })
        await teacher.getByRole('button', { name: 'Show attendance sheet' }).click()
        await visible(teacher.getByText('Attendance is closed', { exact: true }))
        await visible(teacher.getByRole('button', { name: 'Open attendance' }))
        assert.equal(await teacher.locator('#sign-in-url').textContent(), signInLink)
        const rows = await waitForRows(teacher, 1)
        assert.deepEqual(rows[0].slice(1), ['98765', 'Maria Silva'])
        await screenshot(teacher, 'attendance-history.png')
      })

      await t.test(
        '17. the profile: a new first name shows in the top bar; the password needs the current one',
        async () => {
          await teacher.getByRole('link', { name: 'Edit profile' }).click()
          await teacher.waitForURL(/\/edit-profile\.html$/)
          assert.equal(await teacher.getByLabel('Email').inputValue(), email)
          assert.equal(await teacher.getByLabel('Email').getAttribute('readonly'), '')
          await teacher.getByLabel('First name').fill('Teodora')
          await teacher.getByRole('button', { name: 'Save profile' }).click()
          const updated = teacher.getByRole('dialog', { name: 'Profile updated.' })
          await visible(updated)
          await updated.getByRole('button', { name: 'OK' }).click()
          await visible(teacher.locator('#user-name').getByText('Teodora Tavares', { exact: true }))

          await teacher.getByLabel('Current password').fill('not the password')
          await teacher.getByLabel('New password', { exact: true }).fill('a brand new password')
          await teacher.getByLabel('Repeat new password').fill('a brand new password')
          await teacher.getByRole('button', { name: 'Change password' }).click()
          await visible(teacher.getByText('The current password is wrong!', { exact: true }))

          await teacher.getByLabel('Current password').fill(password)
          await teacher.getByRole('button', { name: 'Change password' }).click()
          const changed = teacher.getByRole('dialog', { name: 'Password updated.' })
          await visible(changed)
          await changed.getByRole('button', { name: 'OK' }).click()
        }
      )

      await t.test('18. reg.html: "abc" is too short; an unknown id shows the server\'s not-found text', async () => {
        await student.goto('/reg.html')
        await student.getByLabel('Class ID').fill('abc')
        await student.getByRole('button', { name: 'Confirm class' }).click()
        await visible(student.getByText('Class ID must have 6 characters!', { exact: true }))
        await student.getByLabel('Class ID').fill('222222')
        await student.getByRole('button', { name: 'Confirm class' }).click()
        await student.waitForURL(/\/reg\.html\?id=222222$/)
        await visible(student.locator('#sheet-error').getByText(/not found/i))
      })

      await t.test('19. logout, then /index.html leads to the login page', async () => {
        await teacher.getByRole('button', { name: /Teodora Tavares/ }).click()
        await teacher.getByRole('button', { name: 'Logout' }).click()
        await teacher.waitForURL(/\/login\.html$/)
        await teacher.goto('/index.html')
        await teacher.waitForURL(/\/login\.html/)
      })

      assert.deepEqual(problems, [], 'no script errors and nothing refused by the CSP')
    })

    test("a teacher opening someone else's sheet is told it is not theirs, not sent to the login page", async () => {
      const { context: owner } = await newPage()
      const ownerSheet = await signUpAndCreateSheet(owner)
      const { context, page } = await newPage()
      await signUpAndCreateSheet(context)

      await page.goto(`/attendance-sheet.html?id=${ownerSheet}`)

      await visible(page.getByText('This attendance sheet is not yours.', { exact: true }))
      assert.match(page.url(), sheetUrl)
      assert.equal(await page.locator('#sheet-grid').isVisible(), false)
      assert.deepEqual(problems, [])
    })

    test('without the event stream the list is polled every 15 s by one timer, which stops once the sheet is closed', async () => {
      const { context, page } = await newPage()
      const sheetId = await signUpAndCreateSheet(context)
      await context.route('**/events', (route) => route.abort())
      await page.clock.install()
      let polls = 0
      page.on('request', (request) => {
        if (request.url().endsWith(`/sheet/${sheetId}/students`)) polls++
      })
      const pollsReach = async (count: number) => {
        for (const deadline = Date.now() + 5_000; polls < count;) {
          if (Date.now() > deadline) throw new Error(`expected ${count} list requests, saw ${polls}`)
          await sleep(20)
        }
        await sleep(200) // a request too many would show up by now
        assert.equal(polls, count)
      }

      await page.goto(`/attendance-sheet.html?id=${sheetId}`)
      await visible(page.getByText('Refreshes every 15 s', { exact: true }))
      await pollsReach(1)
      // Manual refreshes reset the period; they must not leave timers of their own behind.
      for (let click = 0; click < 3; click++) await page.getByRole('button', { name: 'Refresh now' }).click()
      await pollsReach(4)
      await context.request.post(`/api/attendance/sheet/${sheetId}/student/registration`, {
        data: { nmec: 5555, name: 'Rita Moura' }
      })

      await page.clock.runFor(15_000)
      await waitForRows(page, 1)
      await pollsReach(5)
      await page.clock.runFor(15_000)
      await pollsReach(6)

      await page.getByRole('button', { name: 'Close attendance' }).click()
      await page.getByRole('dialog').getByRole('button', { name: 'Close attendance' }).click()
      await page.getByRole('dialog', { name: 'Attendance sheet closed.' }).getByRole('button', { name: 'OK' }).click()
      await visible(page.getByText('Attendance is closed: the list no longer refreshes', { exact: true }))
      await page.clock.runFor(60_000)
      await pollsReach(6)
    })

    test('every page has no serious or critical accessibility violations (axe-core)', async () => {
      const axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')
      // The CSP refuses inline scripts, axe's included: only this context may bypass it.
      const { context, page } = await newPage({ bypassCSP: true })
      const sheetId = await signUpAndCreateSheet(context)
      await context.request.post(`/api/attendance/sheet/${sheetId}/student/registration`, {
        data: { nmec: 4242, name: '<b>Ana</b> Lopes' }
      })

      const pages: [string, (() => Promise<void>)?][] = [
        ['/index.html'],
        [
          `/attendance-sheet.html?id=${sheetId}`,
          async () => {
            await visible(page.getByText('Total: 1', { exact: true }))
          }
        ],
        [
          '/attendance-sheet-history.html',
          async () => {
            await page.locator('#history-unit option', { hasText: 'MAS' }).first().waitFor({ state: 'attached' })
            await page.getByLabel('Course unit').selectOption({ label: 'MAS' })
            await page.locator('#schedule option').nth(1).waitFor({ state: 'attached' })
            await page.getByLabel('Schedule').selectOption({ value: sheetId })
            await page.getByRole('button', { name: 'Show attendance sheet' }).click()
            await visible(page.getByText('Total: 1', { exact: true }))
          }
        ],
        ['/edit-profile.html'],
        [
          `/reg.html?id=${sheetId}`,
          async () => {
            await visible(page.getByLabel('Student number'))
          }
        ],
        ['/reg.html'],
        ['/register.html'],
        ['/login.html']
      ]
      const found: string[] = []
      for (const [url, ready] of pages) {
        await page.goto(url)
        await page.waitForLoadState('networkidle').catch(() => {})
        await ready?.()
        found.push(...(await axeViolations(page, axeSource, url)))
        if (url.startsWith('/attendance-sheet.html')) {
          // The student's name is shown as text, never run as markup.
          await visible(page.getByText('<b>Ana</b> Lopes', { exact: true }))
          await page.getByRole('button', { name: 'Register a student manually' }).click()
          found.push(...(await axeViolations(page, axeSource, `${url} (manual sign-in dialog)`)))
          await page.keyboard.press('Escape')
          await gone(page.getByRole('dialog'))
        }
      }
      assert.deepEqual(found, [])
    })

    /** A teacher of its own in this context (the cookie lands in it), with a sheet for MAS. */
    async function signUpAndCreateSheet(context: BrowserContext): Promise<string> {
      const credentials = { email: newEmail(), password: 'correct horse battery' }
      const created = await context.request.post('/api/users', {
        data: { ...credentials, firstName: 'Other', lastName: 'Teacher' }
      })
      assert.equal(created.status(), 201)
      assert.equal((await context.request.post('/api/sessions', { data: credentials })).status(), 201)
      const sheet = await context.request.post('/api/attendance/sheet/new', { data: { courseUnit: 1, summary: 'T2' } })
      assert.equal(sheet.status(), 201)
      return (await sheet.json()).attendanceId
    }
  }
)

interface AxeViolation {
  id: string
  impact: string | null
  help: string
  targets: string[]
}

async function axeViolations(page: Page, axeSource: string, url: string): Promise<string[]> {
  if (!(await page.evaluate('typeof axe !== "undefined"'))) await page.addScriptTag({ content: axeSource })
  const violations = (await page.evaluate(`axe.run(document).then((result) => result.violations.map(
    ({ id, impact, help, nodes }) => ({ id, impact, help, targets: nodes.map((node) => String(node.target)) })))`)) as AxeViolation[]
  return violations
    .filter(({ impact }) => impact === 'serious' || impact === 'critical')
    .map(({ id, impact, help, targets }) => `${url}: ${impact} ${id} (${help}) at ${targets.join(', ')}`)
}
