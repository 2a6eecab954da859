import assert from 'node:assert/strict'
import { randomInt } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { Agent, request as undiciRequest } from 'undici'
import { parse } from 'yaml'
import { newEmail } from './helpers/accounts.js'
import { chromiumSkipReason, gone, launchChromium, visible, waitForRows, watchProblems } from './helpers/browser.js'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { nginxSkipReason, selfSignedCertificate, startNginx, type NginxProcess } from './helpers/nginx.js'
import { redisSkipReason, startRedisServer, type RedisServer } from './helpers/redis.js'
import { projectRoot, spawnServer, type ServerProcess } from './helpers/servers.js'

// What users run with deploy/compose.yaml, natively: deploy/nginx/nginx.conf (and tls.conf) in
// front of two `serve` replicas with the Compose file's own API environment, PostgreSQL and Redis,
// reached by Chromium at a LAN-like name (classroom.test), not at localhost: over plain HTTP there
// Chromium sends no Sec-Fetch-Site, and the Secure flag of a cookie is not excused.

const host = 'classroom.test'
const sheetUrl = /\/attendance-sheet\.html\?id=([2-9A-HJ-NP-Za-km-z]{6})$/
const loginLimit = 10
const password = 'correct horse battery'

/**
 * services.api.environment of deploy/compose.yaml as these replicas can run it: the database and
 * Redis are the test's own, the spawn helper picks the port, and nothing Compose would interpolate
 * (a secret like DATABASE_PASSWORD) is passed on.
 */
async function composeApiEnvironment(): Promise<Record<string, string>> {
  const compose = parse(await readFile(path.join(projectRoot, 'deploy/compose.yaml'), 'utf8'))
  const shipped: unknown = compose?.services?.api?.environment
  const entries: Array<[string, unknown]> = Array.isArray(shipped)
    ? shipped.map((line: string) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)])
    : Object.entries((shipped ?? {}) as Record<string, unknown>)
  assert.ok(entries.length > 0, 'deploy/compose.yaml has services.api.environment')
  const replaced = new Set(['HOST', 'PORT', 'DATABASE_URL', 'REDIS_URL', 'DATABASE_PASSWORD'])
  return Object.fromEntries(
    entries
      .filter(([name, value]) => !replaced.has(name) && value !== null && !String(value).includes('${'))
      .map(([name, value]) => [name, String(value)])
  )
}

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
}

/** An HTTP(S) request from Node to nginx, as a browser at `origin` would address it (Host: classroom.test:port). */
async function call(
  dispatcher: Agent,
  url: string,
  method: string,
  target: string,
  { headers = {}, json }: { headers?: Record<string, string>; json?: unknown } = {}
): Promise<Answer> {
  const res = await undiciRequest(new URL(target, url), {
    method: method as 'GET',
    dispatcher,
    headers: { ...headers, ...(json === undefined ? {} : { 'content-type': 'application/json' }) },
    body: json === undefined ? undefined : JSON.stringify(json),
    signal: AbortSignal.timeout(15_000)
  })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

describe(
  'the Compose deployment: nginx (HTTP and TLS) → two replicas → PostgreSQL + Redis, in Chromium at classroom.test',
  { skip: nginxSkipReason() ?? redisSkipReason() ?? chromiumSkipReason(), timeout: 240_000 },
  () => {
    let db: TestDatabase
    let redis: RedisServer
    let replicas: ServerProcess[] = []
    let nginx: NginxProcess
    let browser: Browser
    let certDir: string
    let httpOrigin: string
    let httpsOrigin: string
    const insecure = new Agent({ connect: { rejectUnauthorized: false }, headersTimeout: 15_000, bodyTimeout: 15_000 })
    const problems: string[] = []
    const contexts: BrowserContext[] = []

    before(async () => {
      db = await createDatabase()
      redis = await startRedisServer()
      const env = {
        ...(await composeApiEnvironment()),
        DATABASE_URL: db.url,
        REDIS_URL: redis.url,
        // Low enough for case d to reach (spawnServer's testLimits raise the address limit; this wins).
        LOGIN_ADDRESS_LIMIT_PER_MINUTE: String(loginLimit),
        LOGIN_LIMIT_PER_MINUTE: String(loginLimit)
      }
      // Both started, or the one that did is stopped in after() all the same.
      const spawned = await Promise.allSettled([1, 2].map(() => spawnServer('serve', env)))
      replicas = spawned.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []))
      for (const result of spawned) if (result.status === 'rejected') throw result.reason
      certDir = await mkdtemp(path.join(tmpdir(), 'tandem-tls-'))
      const { cert, key } = selfSignedCertificate(certDir, `DNS:${host}`)
      nginx = await startNginx(
        replicas.map((replica) => `127.0.0.1:${replica.port}`),
        { tls: { cert, key } }
      )
      httpOrigin = `http://${host}:${nginx.port}`
      httpsOrigin = `https://${host}:${nginx.tlsPort}`
      browser = await launchChromium([`--host-resolver-rules=MAP ${host} 127.0.0.1`])
    })

    after(async () => {
      await Promise.all(contexts.map((context) => context.close().catch(() => undefined)))
      await browser?.close()
      await nginx?.stop()
      await Promise.all(replicas.map((replica) => replica.stop()))
      await insecure.close()
      await redis?.remove()
      await db?.drop()
      if (certDir) await rm(certDir, { recursive: true, force: true })
    })

    async function newContext(baseURL: string, phone = false): Promise<{ context: BrowserContext; page: Page }> {
      const device = phone
        ? { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true }
        : { viewport: { width: 1280, height: 860 } }
      // A context of its own for each: cookies (and any HSTS learnt over TLS) stay in it.
      const context = await browser.newContext({ baseURL, ignoreHTTPSErrors: true, ...device })
      contexts.push(context)
      context.setDefaultTimeout(10_000)
      context.setDefaultNavigationTimeout(15_000)
      const page = await context.newPage()
      watchProblems(page, problems)
      return { context, page }
    }

    /** Registers in the UI, logs out and in again (the session must hold: no loop back to login.html). */
    async function registerAndLogIn(page: Page, email: string) {
      await page.goto('/index.html')
      await page.waitForURL(/\/login\.html/)
      await page.getByRole('link', { name: 'Register' }).click()
      await page.waitForURL(/\/register\.html$/)
      await page.getByLabel('First name').fill('Teresa')
      await page.getByLabel('Last name').fill('Tavares')
      await page.getByLabel('Email').fill(email)
      await page.getByLabel('Password', { exact: true }).fill(password)
      await page.getByLabel('Repeat password').fill(password)
      await page.getByRole('button', { name: 'Register' }).click()
      const dialog = page.getByRole('dialog', { name: 'Registration complete' })
      await visible(dialog)
      await dialog.getByRole('button', { name: 'Create an attendance sheet' }).click()
      await page.waitForURL(/\/index\.html$/)
      await loggedIn(page, 'after registering')

      await page.getByRole('button', { name: /Teresa Tavares/ }).click()
      await page.getByRole('button', { name: 'Logout' }).click()
      await page.waitForURL(/\/login\.html$/)
      await page.getByLabel('Email').fill(email)
      await page.getByLabel('Password').fill(password)
      await page.getByRole('button', { name: 'Login' }).click()
      await page.waitForURL(/\/index\.html$/, { timeout: 10_000 }).catch(async () => {
        const shown =
          (await page
            .locator('#login-errors')
            .textContent()
            .catch(() => '')) ?? ''
        throw new Error(
          `the login did not lead to index.html: at ${page.url()}, the login page says ${JSON.stringify(shown.trim())}`
        )
      })
      await visible(page.getByRole('heading', { name: 'Create attendance sheet' }))
      await loggedIn(page, 'after logging in')
      // A cookie the browser refused would send the page back to login.html once it asks who is there.
      await page.waitForLoadState('networkidle').catch(() => undefined)
      await sleep(500)
      assert.match(page.url(), /\/index\.html$/, 'still on the create page, logged in')
      await loggedIn(page, 'a moment after logging in')
    }

    /** The top bar greets the teacher; otherwise says where the page went and which cookies the browser kept. */
    async function loggedIn(page: Page, when: string) {
      await visible(page.locator('#user-name').getByText('Teresa Tavares', { exact: true })).catch(async () => {
        const cookies = (await page.context().cookies()).map(
          ({ name, secure }) => `${name}${secure ? ' (Secure)' : ''}`
        )
        throw new Error(
          `not logged in ${when}: the page is at ${page.url()}, the browser kept the cookies [${cookies.join(', ')}]`
        )
      })
    }

    /** DETI, PI, "tp1" from the create page: the sheet id, the sign-in link and the answer of the write. */
    async function createSheet(page: Page) {
      await page.getByLabel('Department').selectOption({ label: 'DETI' })
      await page.locator('#course-unit option', { hasText: 'PI' }).first().waitFor({ state: 'attached' })
      await page.getByLabel('Course unit').selectOption({ label: 'PI' })
      await page.getByLabel('Summary').fill('tp1')
      const answered = page.waitForResponse(
        (res) => res.url().endsWith('/api/attendance/sheet/new') && res.request().method() === 'POST',
        { timeout: 10_000 }
      )
      await page.getByRole('button', { name: 'Create attendance sheet' }).click()
      const created = await answered
      assert.equal(
        created.status(),
        201,
        `the same-origin write through nginx is accepted: ${await created.text().catch(() => '')}`
      )
      await page.waitForURL(sheetUrl)
      const sheetId = sheetUrl.exec(page.url())![1]
      await visible(page.getByRole('heading', { name: 'Class of PI', level: 1 }))
      await visible(page.locator('#qr-button svg'))
      const signInLink = (await page.locator('#sign-in-url').textContent()) ?? ''
      assert.equal(
        await page.locator('#qr-button svg').getAttribute('aria-label'),
        `QR code for ${signInLink}`,
        'the QR code holds the sign-in link'
      )
      await visible(page.getByText('Updates live', { exact: true }))
      return { sheetId, signInLink, created, requestHeaders: await created.request().allHeaders() }
    }

    /** A student on a phone of their own opens the link and signs in; the teacher's page shows it by itself. */
    async function studentSignsIn(teacher: Page, signInLink: string, origin: string, nmec: string, name: string) {
      const { page: student } = await newContext(origin, true)
      await student.goto(signInLink)
      await visible(student.getByRole('heading', { name: 'Class of PI' }))
      await visible(student.locator('#class-teacher').getByText('Teresa Tavares', { exact: true }))
      await student.getByLabel('Student number').fill(nmec)
      await student.getByLabel('Name').fill(name)
      await student.getByRole('button', { name: 'Register attendance' }).click()
      const dialog = student.getByRole('dialog', { name: 'Attendance recorded.' })
      await visible(dialog)
      await dialog.getByRole('button', { name: 'OK' }).click()
      await gone(dialog)
      // Over the event stream (nginx passes each event on at once), well inside the 15 s poll period.
      const rows = await waitForRows(teacher, 1, 8_000)
      assert.deepEqual(
        rows.map((row) => row.slice(1)),
        [[nmec, name]]
      )
    }

    /** A teacher registered from Node through nginx over HTTP, and (unless `logIn` is false) the cookie its login set. */
    async function registerThroughNginx({ logIn = true } = {}) {
      const email = newEmail()
      const headers = { host: `${host}:${nginx.port}` }
      const created = await call(insecure, nginx.url, 'POST', '/api/users', {
        headers,
        json: { email, password, firstName: 'Other', lastName: 'Teacher' }
      })
      assert.equal(created.status, 201, created.text)
      if (!logIn) return { email, cookie: '' }
      const login = await call(insecure, nginx.url, 'POST', '/api/sessions', { headers, json: { email, password } })
      assert.equal(login.status, 201, login.text)
      const setCookie = [login.headers['set-cookie'] ?? []].flat().find((line) => line.startsWith('tandem_session='))
      assert.ok(setCookie, 'the login set the session cookie')
      return { email, cookie: setCookie.split(';')[0] }
    }

    test('the replicas run the API environment of deploy/compose.yaml', async () => {
      const env = await composeApiEnvironment()
      assert.equal(env.NODE_ENV, 'production')
      assert.ok(env.TRUST_PROXY, 'the Compose file says which proxy to trust')
    })

    test('a. plain HTTP at http://classroom.test:PORT: register, log in, create, QR link, a phone signs in, shown live', async () => {
      const { context, page: teacher } = await newContext(httpOrigin)
      await registerAndLogIn(teacher, newEmail())

      const { sheetId, signInLink, created, requestHeaders } = await createSheet(teacher)
      assert.equal(requestHeaders.origin, httpOrigin, 'the browser sent its Origin')
      assert.equal(
        requestHeaders['sec-fetch-site'],
        undefined,
        'no Sec-Fetch-Site over HTTP at a LAN name: the Origin check decided'
      )
      assert.equal(created.headers()['strict-transport-security'], undefined, 'no HSTS over plain HTTP')
      assert.ok(signInLink.startsWith(`${httpOrigin}/`), `sign-in link ${signInLink}`)
      assert.equal(signInLink, `${httpOrigin}/reg.html?id=${sheetId}`)

      await teacher.locator('#qr-button').click()
      const overlay = teacher.getByRole('dialog', { name: /QR code/ })
      await visible(overlay)
      assert.equal(await overlay.locator('#qr-overlay-url').textContent(), signInLink)
      await overlay.getByRole('button', { name: 'Close' }).click()
      await gone(overlay)

      await studentSignsIn(teacher, signInLink, httpOrigin, '98765', 'Maria Silva')

      const session = (await context.cookies()).find((cookie) => cookie.name === 'tandem_session')
      assert.ok(session, 'the session cookie is kept')
      assert.equal(session.secure, false, 'no Secure flag over plain HTTP')
      assert.equal(session.httpOnly, true)
      assert.deepEqual(problems, [], 'no script errors and nothing refused by the CSP')
    })

    test('b. over TLS at https://classroom.test:TLSPORT: the same flow, a Secure cookie and HSTS', async () => {
      const { context, page: teacher } = await newContext(httpsOrigin)
      await registerAndLogIn(teacher, newEmail())

      const { sheetId, signInLink, created, requestHeaders } = await createSheet(teacher)
      assert.equal(requestHeaders.origin, httpsOrigin)
      assert.match(created.headers()['strict-transport-security'] ?? '', /max-age=\d+/, 'HSTS over HTTPS')
      assert.equal(signInLink, `${httpsOrigin}/reg.html?id=${sheetId}`)

      await studentSignsIn(teacher, signInLink, httpsOrigin, '12345', 'Joao Costa')

      const session = (await context.cookies()).find((cookie) => cookie.name === 'tandem_session')
      assert.ok(session, 'the session cookie is kept')
      assert.equal(session.secure, true, 'Secure over HTTPS')

      // From Node too: HSTS on the HTTPS server only.
      const overTls = await call(insecure, nginx.tlsUrl!, 'GET', '/health', {
        headers: { host: `${host}:${nginx.tlsPort}` }
      })
      assert.equal(overTls.status, 200)
      assert.match(String(overTls.headers['strict-transport-security']), /max-age=\d+/)
      const overHttp = await call(insecure, nginx.url, 'GET', '/health', { headers: { host: `${host}:${nginx.port}` } })
      assert.equal(overHttp.status, 200)
      assert.equal(overHttp.headers['strict-transport-security'], undefined)
      assert.deepEqual(problems, [], 'no script errors and nothing refused by the CSP')
    })

    test("c. a cross-site write with the teacher's cookie is refused through nginx and writes nothing; the same-origin one is accepted", async () => {
      const teacher = await registerThroughNginx()
      const sheets = async () => (await db.sql<{ n: number }[]>`select count(*)::int as n from attendance_sheets`)[0].n
      const attempt = (url: string, hostPort: string, origin: string) =>
        call(insecure, url, 'POST', '/api/attendance/sheet/new', {
          headers: { host: hostPort, origin, cookie: teacher.cookie },
          json: { courseUnit: 1, summary: 'T2' }
        })
      const before = await sheets()

      for (const [url, hostPort] of [
        [nginx.url, `${host}:${nginx.port}`],
        [nginx.tlsUrl!, `${host}:${nginx.tlsPort}`]
      ]) {
        const evil = await attempt(url, hostPort, 'http://evil.test')
        assert.equal(evil.status, 403, `${url}: ${evil.text}`)
        assert.match(evil.text, /cross-site request refused/)
      }
      // Right host, wrong scheme or port: another origin all the same.
      const otherPort = await attempt(nginx.url, `${host}:${nginx.port}`, `http://${host}:${nginx.tlsPort}`)
      assert.equal(otherPort.status, 403, otherPort.text)
      assert.equal(await sheets(), before, 'nothing written')

      const same = await attempt(nginx.url, `${host}:${nginx.port}`, httpOrigin)
      assert.equal(same.status, 201, same.text)
      assert.match(JSON.parse(same.text).attendanceId, /^[2-9A-HJ-NP-Za-km-z]{6}$/)
      assert.equal(await sheets(), before + 1)
    })

    test('d. a forged X-Forwarded-For does not escape the login limit (counted in PostgreSQL for both replicas)', async () => {
      const { email } = await registerThroughNginx({ logIn: false })
      const attempts = loginLimit + 6
      const statuses: number[] = []
      let refused: Answer | undefined
      for (let i = 0; i < attempts; i++) {
        const forged = `${randomInt(1, 224)}.${randomInt(0, 256)}.${randomInt(0, 256)}.${randomInt(1, 255)}`
        const res = await call(insecure, nginx.url, 'POST', '/api/sessions', {
          headers: { host: `${host}:${nginx.port}`, 'x-forwarded-for': forged },
          json: { email, password: 'not the password' }
        })
        statuses.push(res.status)
        if (res.status === 429) refused ??= res
      }
      assert.deepEqual(
        statuses.filter((status) => status !== 401 && status !== 429),
        [],
        `only 401 and 429: ${statuses}`
      )
      assert.ok(
        statuses.filter((status) => status === 401).length <= loginLimit,
        `at most ${loginLimit} wrong passwords heard: ${statuses}`
      )
      assert.equal(statuses.at(-1), 429, `the limit held to the end: ${statuses}`)
      assert.ok(statuses.filter((status) => status === 429).length >= attempts - loginLimit, `${statuses}`)
      const retryAfter = Number(refused!.headers['retry-after'])
      assert.ok(
        Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60,
        `Retry-After: ${refused!.headers['retry-after']}`
      )
    })

    test('e. nginx sent requests to both replicas', async () => {
      const instances = new Set<string>()
      for (let i = 0; i < 20; i++) {
        const res = await call(insecure, i % 2 ? nginx.url : nginx.tlsUrl!, 'GET', '/counter', {
          headers: { accept: 'application/json' }
        })
        assert.equal(res.status, 200, res.text)
        instances.add(JSON.parse(res.text).instance)
      }
      const ports = [...instances].map((instance) => Number(/:(\d+)#/.exec(instance)?.[1])).sort()
      assert.deepEqual(ports, replicas.map((replica) => replica.port).sort(), `instances seen: ${[...instances]}`)
    })
    test('f. a cookie the browser refuses (COOKIE_SECURE=true over plain HTTP) is an error on the login page, not a loop', async () => {
      const forced = await spawnServer('serve', {
        ...(await composeApiEnvironment()),
        DATABASE_URL: db.url,
        COOKIE_SECURE: 'true',
        TRUST_PROXY: 'false'
      })
      try {
        const email = newEmail()
        const created = await call(insecure, forced.url, 'POST', '/api/users', {
          json: { email, password, firstName: 'Teresa', lastName: 'Tavares' }
        })
        assert.equal(created.status, 201, created.text)
        const { page } = await newContext(`http://${host}:${forced.port}`)
        await page.goto('/login.html')
        await page.getByLabel('Email').fill(email)
        await page.getByLabel('Password').fill(password)
        await page.getByRole('button', { name: 'Login' }).click()

        const errors = page.locator('#login-errors')
        await visible(errors)
        assert.match((await errors.textContent()) ?? '', /refused the session cookie.*Secure.*plain HTTP/)
        assert.match(page.url(), /\/login\.html$/)
        assert.deepEqual(await page.context().cookies(), [], 'the browser kept no cookie')
      } finally {
        await forced.stop()
      }
    })
  }
)
