import { setTimeout as sleep } from 'node:timers/promises'

/** Polls `condition` every 50 ms; throws naming `what` after `timeoutMs`. */
export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000) {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(50)) {
    if (await condition()) return
  }
  throw new Error(`gave up waiting ${timeoutMs} ms for ${what}`)
}
