import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

/** A port free on 127.0.0.1 right now (the kernel's pick), for a server that cannot take port 0. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/**
 * Running, and not a zombie: a dead process not yet reaped still answers signal 0, and PostgreSQL
 * takes a zombie postmaster for a live server and refuses its data directory.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  return !isZombie(pid)
}

export function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return false // gone, or no /proc (macOS): signal 0 has answered already
  }
}
