import { existsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { chromium, type Browser, type Locator, type Page } from 'playwright-core'

// Debian's Chromium, driven by playwright-core: what the web UI end-to-end tests run in.

export const chromiumPath = '/usr/bin/chromium'

export const launchArgs = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-quic',
  '--disable-sync'
]

/** Why the browser cases cannot run here (said loudly), or undefined when they can. */
export function chromiumSkipReason(): string | undefined {
  if (existsSync(chromiumPath)) return undefined
  const reason = `SKIPPED: ${chromiumPath} is missing (apt-get install -y chromium; .ci/run does) — the web UI end-to-end test did not run`
  console.warn(`\n*** ${reason} ***\n`)
  return reason
}

/**
 * Headless Chromium with the usual arguments and `extraArgs`, e.g.
 * `--host-resolver-rules=MAP classroom.test 127.0.0.1` to reach a local server by a LAN-like name.
 */
export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [...launchArgs, ...extraArgs],
    timeout: 30_000
  })
}

/** Watches a page for script errors and CSP refusals: the pages must work under `script-src 'self'`. */
export function watchProblems(page: Page, problems: string[]) {
  page.on('pageerror', (error) => problems.push(`${page.url()}: ${error.message}`))
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) problems.push(`${page.url()}: ${message.text()}`)
  })
}

export const visible = (locator: Locator) => locator.waitFor({ state: 'visible' })
export const gone = (locator: Locator) => locator.waitFor({ state: 'hidden' })

/** The student table of a sheet page, each row as [timestamp, student number, name] (the selection column left out). */
export async function rowsOf(page: Page): Promise<string[][]> {
  const rows = await page.locator('#students-body tr').all()
  return Promise.all(rows.map(async (row) => (await row.locator('td').allTextContents()).slice(1)))
}

/** The student table once it has `count` rows; throws after `timeoutMs`. */
export async function waitForRows(page: Page, count: number, timeoutMs = 10_000): Promise<string[][]> {
  const rows = page.locator('#students-body tr')
  for (const deadline = Date.now() + timeoutMs; (await rows.count()) !== count;) {
    if (Date.now() > deadline) throw new Error(`expected ${count} rows, found ${await rows.count()}`)
    await sleep(50)
  }
  return rowsOf(page)
}
