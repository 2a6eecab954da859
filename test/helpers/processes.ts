/**
 * The process harness shared by the tests and the benchmarks: start a command in a process group
 * of its own, keep its output, wait for a line or for /health, stop the group.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { isAlive } from '../../src/platform/processes.js'

export { freePort } from '../../src/platform/processes.js'

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const mainScript = path.join(projectRoot, 'dist/main.js')

export interface Launched {
  name: string
  child: ChildProcess
  /** What it wrote on stdout and stderr (the last `keepChars` of it, when given). */
  output(): string
  /** Resolves with the exit code (null after a signal). */
  exited: Promise<number | null>
}

export interface LaunchOptions {
  /** Besides PATH and HOME, which every process gets; nothing else of ours leaks in. */
  env?: Record<string, string>
  /** CPUs to run on (taskset -c), so a benchmark's servers do not steal the driver's time. */
  cpus?: string
  /** A long run keeps only the tail of its output. */
  keepChars?: number
}

/**
 * `command` in its own process group, so one signal reaches it and everything it starts, and a
 * Ctrl-C in the terminal reaches the driver only (which then stops things in its own order).
 */
export function launch(name: string, command: string[], { env = {}, cpus, keepChars }: LaunchOptions = {}): Launched {
  const argv = cpus ? ['taskset', '-c', cpus, ...command] : command
  const child = spawn(argv[0], argv.slice(1), {
    cwd: projectRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }
  })
  let output = ''
  const keep = (chunk: Buffer | string) => {
    output += chunk.toString()
    if (keepChars !== undefined && output.length > keepChars) output = output.slice(-keepChars)
  }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  child.on('error', (error) => keep(`spawn failed: ${error.message}\n`))
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  return { name, child, output: () => output, exited }
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

/** Gone for good: a zombie still answers kill(pid, 0), and PostgreSQL refuses to start over one. */
export function isGone(pid: number): boolean {
  return !isAlive(pid)
}

/** A signal to a process (or, with a negative pid, to a group) that may have gone meanwhile. */
function signal(pid: number, name: NodeJS.Signals) {
  try {
    process.kill(pid, name)
  } catch {
    // already gone
  }
}

export const signalGroup = (pgid: number, name: NodeJS.Signals) => signal(-pgid, name)

/** kill -9 of a process group: the supervisor, its workers and anything else it started in it. */
export function killGroup(child: ChildProcess) {
  if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL')
}

export interface StopOptions {
  /** The polite signal, sent to `pid` alone or to its whole group; SIGKILL of the group follows. */
  signal?: NodeJS.Signals
  groupSignal?: boolean
  graceMs?: number
  /** Settles when the process has gone, to stop waiting early. */
  exited?: Promise<unknown>
}

/** The polite signal, then SIGKILL of the group after the grace period; done once `pid` is gone. */
export async function stopGroup(
  pid: number,
  { signal: polite = 'SIGTERM', groupSignal = true, graceMs = 10_000, exited }: StopOptions = {}
) {
  for (const [sent, waitMs] of [
    [polite, graceMs],
    ['SIGKILL', 2000]
  ] as const) {
    if (isGone(pid)) return
    signal(sent === 'SIGKILL' || groupSignal ? -pid : pid, sent)
    const deadline = Date.now() + waitMs
    while (!isGone(pid) && Date.now() < deadline) await Promise.race([sleep(50), exited])
  }
}

/** Stops a launched process and its group; safe on one that has exited. */
export async function stopLaunched({ child, exited }: Launched, options: StopOptions = {}) {
  if (child.pid === undefined || hasExited(child)) return
  await stopGroup(child.pid, { ...options, exited })
}

/** The first group of `pattern` once the process prints it; fails as soon as the process exits. */
export async function waitForLine(launched: Launched, pattern: RegExp, timeoutMs = 60_000): Promise<string> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(50)) {
    const match = pattern.exec(launched.output())
    if (match) return match[1]
    if (hasExited(launched.child)) throw new Error(`${launched.name} exited during start-up:\n${launched.output()}`)
  }
  throw new Error(`${launched.name} printed no ${pattern} within ${timeoutMs / 1000} s:\n${launched.output()}`)
}

/** Until `url`/health answers 200; fails as soon as one of `watched` exits, with its output. */
export async function waitHealthy(url: string, watched: Launched[], timeoutMs = 60_000) {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(100)) {
    const dead = watched.find((launched) => hasExited(launched.child))
    if (dead) throw new Error(`${dead.name} exited during start-up:\n${dead.output()}`)
    const ok = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) }).then(
      (res) => res.ok,
      () => false
    )
    if (ok) return
  }
  throw new Error(
    `${url}/health did not answer within ${timeoutMs / 1000} s:\n${watched.map((launched) => launched.output()).join('\n')}`
  )
}

/** Resolves true once a new TCP connection to the port is refused: nobody accepts on it any more. */
export function isRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'))
  })
}
