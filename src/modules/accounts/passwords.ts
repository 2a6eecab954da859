import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import { Unavailable } from '../../platform/errors.js'

// scrypt with 32 MiB of memory per hash: slow for a guesser, still fine for a login.
const cost = { N: 2 ** 15, r: 8, p: 1 }
const keyLength = 32

function derive(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(
      password.normalize('NFKC'),
      salt,
      keyLength,
      { ...options, maxmem: 128 * options.N! * options.r! * 2 },
      (error, key) => (error ? reject(error) : resolve(key))
    )
  )
}

/** `scrypt$N$r$p$salt$hash`, parameters kept so they can be raised later without breaking old hashes. */
async function hash(password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await derive(password, salt, cost)
  return ['scrypt', cost.N, cost.r, cost.p, salt.toString('base64'), key.toString('base64')].join('$')
}

async function verify(password: string, stored: string): Promise<boolean> {
  const [scheme, N, r, p, salt, expected] = stored.split('$')
  if (scheme !== 'scrypt') return false
  const expectedKey = Buffer.from(expected, 'base64')
  const key = await derive(password, Buffer.from(salt, 'base64'), { N: Number(N), r: Number(r), p: Number(p) })
  return key.length === expectedKey.length && timingSafeEqual(key, expectedKey)
}

export interface PasswordHasher {
  hash(password: string): Promise<string>
  verify(password: string, stored: string): Promise<boolean>
}

/**
 * Hashes and verifies at most `concurrency` passwords at once, the rest waiting in a queue of at most
 * `queueMax`; beyond it, a 503 at once. scrypt runs on libuv's threadpool (4 threads, shared with
 * file I/O and DNS): unbounded, a burst of logins or registrations would starve everything else in
 * the process, and the queue cap bounds how long a request can wait for its turn.
 */
export function passwordHasher({ concurrency, queueMax }: { concurrency: number; queueMax: number }): PasswordHasher {
  let running = 0
  const waiting: Array<() => void> = []

  async function bounded<T>(work: () => Promise<T>): Promise<T> {
    if (running >= concurrency) {
      if (waiting.length >= queueMax) throw new Unavailable('too many passwords being checked, retry shortly')
      await new Promise<void>((resolve) => waiting.push(resolve))
    } else {
      running++
    }
    try {
      return await work()
    } finally {
      // The slot passes straight to the next in line, so no newcomer can overtake the queue.
      const next = waiting.shift()
      if (next) next()
      else running--
    }
  }

  return {
    hash: (password) => bounded(() => hash(password)),
    verify: (password, stored) => bounded(() => verify(password, stored))
  }
}

// Verifying against this when the email is unknown makes both failures take the same time. Computed
// once at start-up, outside any bound: no request waits for it.
export const unknownUserHash = await hash(randomBytes(12).toString('hex'))
