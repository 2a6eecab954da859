/**
 * Spawned replicas run dist/, not src/: after an edit, a test of a process would silently test the
 * build before it. `npm test` (test/run.ts) and the benchmarks build first when dist/ is stale; a test
 * file run alone is stopped here instead.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { mainScript, projectRoot } from './processes.js'

/** What dist/ is built from: the server's sources (not its tests) and the web UI's. */
const sourceRoots = ['src', 'web']

/** Set by test/run.ts once dist/ is fresh, so an edit during a long run does not fail the files after it. */
export const freshBuildVariable = 'TANDEM_TEST_BUILD_FRESH'

function newestSource(): { file: string; mtimeMs: number } {
  let newest = { file: '', mtimeMs: 0 }
  for (const root of sourceRoots) {
    for (const relative of readdirSync(path.join(projectRoot, root), { recursive: true, encoding: 'utf8' })) {
      if (relative.endsWith('.test.ts')) continue
      const file = path.join(root, relative)
      const stat = statSync(path.join(projectRoot, file))
      // A directory's time changes when a file moves out of it, which no build needs to follow.
      if (stat.isFile() && stat.mtimeMs > newest.mtimeMs) newest = { file, mtimeMs: stat.mtimeMs }
    }
  }
  return newest
}

/** Why dist/ cannot be trusted to be the code in src/, or undefined when it can. */
export function staleBuild(): string | undefined {
  if (!existsSync(mainScript)) return 'dist/main.js does not exist'
  const built = statSync(mainScript).mtimeMs
  const newest = newestSource()
  if (newest.mtimeMs <= built) return undefined
  return `${newest.file} changed after dist/ was built (${new Date(newest.mtimeMs).toISOString()} > ${new Date(built).toISOString()})`
}

let checked = false

/** Throws, saying what to run, when dist/ is older than its sources; checked once a process. */
export function assertFreshBuild() {
  if (checked || process.env[freshBuildVariable] === '1') return
  const stale = staleBuild()
  if (stale) {
    throw new Error(
      `STALE BUILD: this test spawns replicas from dist/, but ${stale}. ` +
        'Run `npm run build` first, or run the tests with `npm test`, which builds.'
    )
  }
  checked = true
}

/** Builds dist/ when it is older than its sources (`npm test` after an edit, `npm run bench`); says why. */
export function buildIfStale(who: string) {
  const stale = staleBuild()
  if (!stale) return
  console.log(`${who}: ${stale}; building`)
  const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: projectRoot, stdio: 'inherit' })
  if (build.status !== 0) throw new Error(`${who}: the build failed (exit ${build.status ?? build.signal})`)
}
