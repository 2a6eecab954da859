import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { mainScript, projectRoot } from './helpers/processes.js'

/** `npm run bench -- …args`, as a user types it, from the project's root. */
function bench(args: string[], timeoutMs = 120_000) {
  const run = spawnSync('npm', ['run', 'bench', '--silent', '--', ...args], {
    cwd: projectRoot,
    encoding: 'utf8',
    timeout: timeoutMs
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
    for (const args of [['--bogus'], ['--servers', 'nope'], ['--rate', 'x'], ['--rounds', '0'], ['--rounds', '1.5']]) {
      const bad = bench(args)
      assert.equal(bad.code, 2, `${args.join(' ')}: ${bad.output}`)
      assert.match(bad.output, /^bench: /m, `${args.join(' ')}: ${bad.output}`)
      assert.doesNotMatch(bad.output, /\n\s+at /, `${args.join(' ')}: a stack trace\n${bad.output}`)
    }
  })

  test('--rounds 2 runs the servers twice, the order rotated, and compares their medians', () => {
    const leftovers = () => readdirSync(tmpdir()).filter((name) => name.startsWith('tandem-'))
    const before = new Set(leftovers())
    const run = bench(['--servers', 'tandem,baseline', '--rounds', '2', '--duration-scale', '0.02'], 300_000)
    assert.equal(run.code, 0, run.output)
    assert.match(run.stdout, /^round 1 of 2: tandem, baseline$/m, run.output)
    assert.match(run.stdout, /^round 2 of 2: baseline, tandem$/m, run.output)
    const table = run.stdout.slice(run.stdout.indexOf('\ncomparison'))
    assert.match(table, /medians over 2 rounds/, run.output)
    // Each run on a line of its own, then one line of medians per server with its ratios.
    assert.equal(table.match(/^ {2}(tandem|baseline) #[12] /gm)?.length, 4, table)
    assert.match(table, /^ {2}tandem {2,}\d+/m, table)
    assert.match(table, /^ {4}\/ baseline +[\d.]+× +[\d.]+×/m, table)
    // Every directory the four topologies made is gone.
    assert.deepEqual(
      leftovers().filter((name) => !before.has(name)),
      []
    )
  })

  test('--servers fastify: the same routes on bare Fastify pass every check; --access-log keeps a line per request', async () => {
    const run = bench(['--servers', 'fastify', '--duration-scale', '0.02', '--access-log'], 180_000)
    assert.equal(run.code, 0, run.output)
    assert.match(run.stdout, /2 × bench\/baseline\/fastify\.mjs/, run.output)
    assert.match(run.stdout, /^PASSED: every check held$/m, run.output)
    // Every request the load sent went through nginx (and the final checks' reads after it): one access
    // line each, naming the replica that answered.
    const sent = Number(/^requests +(\d+)/m.exec(run.stdout)?.[1])
    const file = /, (\S+\.access\.jsonl)$/m.exec(run.stdout)?.[1]
    assert.ok(sent > 0 && file, run.output)
    const lines = (await readFile(path.join(projectRoot, file), 'utf8')).trim().split('\n')
    const requests = lines.map((line) => JSON.parse(line) as { uri: string; upstream: string; upstream_time: string })
    const load = requests.filter((request) => request.uri.startsWith('/clientes/'))
    assert.ok(load.length >= sent, `${load.length} access lines for the load's ${sent} requests`)
    assert.equal(new Set(load.map((request) => request.upstream)).size, 2, 'both replicas answered')
    assert.ok(load.every((request) => Number(request.upstream_time) >= 0))
  })
})

describe('npm run bench:closed', () => {
  test("each server's allocations and GC per request; --alloc-prof: where each allocates, read by bench/profile.ts", async () => {
    const profiles = await mkdtemp(path.join(tmpdir(), 'closed-alloc-'))
    try {
      const run = spawnSync(
        'npx',
        [
          'tsx',
          'bench/closed.ts',
          ...['--targets', 'tandem,baseline', '--connections', '2', '--warmup', '1', '--seconds', '2'],
          ...['--rounds', '1', '--alloc-prof', profiles]
        ],
        { cwd: projectRoot, encoding: 'utf8', timeout: 240_000 }
      )
      const output = `${run.stdout}${run.stderr}`
      assert.equal(run.status, 0, output)
      const file = /^written (\S+-closed\.json)$/m.exec(run.stdout)?.[1]
      assert.ok(file, output)
      const { runs } = JSON.parse(await readFile(path.join(projectRoot, file), 'utf8')) as {
        runs: Array<{ server: string; requests: number; allocatedKb: number; scavengesPerThousand: number }>
      }
      assert.equal(runs.length, 4, output)
      for (const measured of runs) {
        assert.ok(measured.requests > 0, JSON.stringify(measured))
        // A request through Node's HTTP server and postgres.js allocates kilobytes, not bytes or megabytes.
        assert.ok(measured.allocatedKb > 1 && measured.allocatedKb < 500, JSON.stringify(measured))
        assert.ok(measured.scavengesPerThousand >= 0, JSON.stringify(measured))
      }
      assert.match(run.stdout, /^ +per request [\d.]+ KB allocated; per 1000 requests [\d.]+ scavenges/m, output)

      const profile = spawnSync('npx', ['tsx', 'bench/profile.ts', path.join(profiles, 'tandem.heapprofile')], {
        cwd: projectRoot,
        encoding: 'utf8'
      })
      assert.equal(profile.status, 0, profile.stderr)
      assert.match(profile.stdout, /^bytes allocated by function \(total [\d.]+ MiB\)$/m, profile.stdout)
      assert.match(profile.stdout, /dist\/modules\/crebitos\//, 'Tandem routes allocate')
      // Tandem runs as deploy/compose.rinha.yaml runs it: no access line per request.
      assert.doesNotMatch(profile.stdout, /write +pino\//, profile.stdout)
      assert.ok(statSync(path.join(profiles, 'baseline.heapprofile')).size > 0)
    } finally {
      await rm(profiles, { recursive: true, force: true })
    }
  })
})
