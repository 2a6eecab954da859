import { after, before } from 'node:test'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { launchChromium, watchProblems } from './browser.js'
import { createDatabase, type TestDatabase } from './database.js'
import { spawnServer, type ServerProcess } from './servers.js'

/** What a web UI end-to-end suite drives: `start` (two node:cluster workers) on its own database, and Chromium. */
export interface WebUi {
  /** The server's base URL, once `before` has run. */
  readonly url: string
  /** Script errors and CSP refusals seen on any page opened with `newPage`: a suite asserts it stays empty. */
  readonly problems: string[]
  /** A fresh browser context (1280×860 unless `options` say otherwise, 10 s per action) and a page in it. */
  newPage(options?: Parameters<Browser['newContext']>[0]): Promise<{ context: BrowserContext; page: Page }>
}

/** Registers the suite's `before`/`after`: call it at the top of a `describe`. */
export function webUi(): WebUi {
  let db: TestDatabase
  let server: ServerProcess
  let browser: Browser
  const problems: string[] = []

  before(async () => {
    db = await createDatabase()
    server = await spawnServer('start', { DATABASE_URL: db.url, WORKERS: '2' })
    browser = await launchChromium()
  })

  after(async () => {
    await browser?.close()
    await server?.stop()
    await db?.drop()
  })

  return {
    get url() {
      return server.url
    },
    problems,
    async newPage(options = {}) {
      const context = await browser.newContext({
        baseURL: server.url,
        viewport: { width: 1280, height: 860 },
        ...options
      })
      context.setDefaultTimeout(10_000)
      const page = await context.newPage()
      watchProblems(page, problems)
      return { context, page }
    }
  }
}
