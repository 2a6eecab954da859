import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { statSync } from 'node:fs'
import { describe, test } from 'node:test'
import { mainScript, projectRoot } from './helpers/processes.js'

/** `npm run bench -- …args`, as a user types it, from the project's root. */
function bench(args: string[]) {
  const run = spawnSync('npm', ['run', 'bench', '--silent', '--', ...args], {
    cwd: projectRoot,
    encoding: 'utf8',
    timeout: 120_000
  })
  return { code: run.status, stdout: run.stdout, output: `${run.stdout}${run.stderr}` }
}

describe('npm run bench', () => {
  test('--help prints the options and exits 0 without building dist/ first', () => {
    const builtAt = statSync(mainScript).mtimeMs
    const help = bench(['--help'])
    assert.equal(help.code, 0, help.output)
    for (const option of ['--servers', '--scenario', '--rate', '--duration-scale', '--find-max', '--server-env'])
      assert.ok(help.stdout.includes(option), `--help names ${option}:\n${help.stdout}`)
    assert.equal(statSync(mainScript).mtimeMs, builtAt, 'dist/ was rebuilt for --help')
  })

  test('an unknown option or a bad value is named, with exit 2 and no stack trace', () => {
    for (const args of [['--bogus'], ['--servers', 'nope'], ['--rate', 'x']]) {
      const bad = bench(args)
      assert.equal(bad.code, 2, `${args.join(' ')}: ${bad.output}`)
      assert.match(bad.output, /^bench: /m, `${args.join(' ')}: ${bad.output}`)
      assert.doesNotMatch(bad.output, /\n\s+at /, `${args.join(' ')}: a stack trace\n${bad.output}`)
    }
  })
})
