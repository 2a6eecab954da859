/**
 * The self time of a V8 .cpuprofile (`node --cpu-prof`), summed by function and by file: where the
 * CPU went, for `bench:closed -- --cpu-prof DIR`.
 *   npx tsx bench/profile.ts DIR/CPU.*.cpuprofile [--top 30]
 */
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'

interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
}
interface Profile {
  nodes: Node[]
  samples: number[]
  timeDeltas: number[]
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '30' } }
})
const top = Number(values.top)
const profile = JSON.parse(await readFile(positionals[0], 'utf8')) as Profile
const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const selfUs = new Map<number, number>()
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
const total = [...selfUs.values()].reduce((a, b) => a + b, 0)

/** node_modules/<package> or the project's own path, so a file's share reads at a glance. */
function where(url: string): string {
  if (!url) return '(native)'
  const modules = url.lastIndexOf('node_modules/')
  if (modules !== -1) return url.slice(modules + 13)
  if (url.startsWith('node:')) return url
  const dist = url.indexOf('/dist/')
  return dist === -1 ? url : url.slice(dist + 1)
}

function table(title: string, key: (node: Node) => string) {
  const sums = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const name = key(byId.get(id)!)
    sums.set(name, (sums.get(name) ?? 0) + us)
  }
  process.stdout.write(`\n${title} (total ${(total / 1e6).toFixed(2)} s)\n`)
  for (const [name, us] of [...sums].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${((100 * us) / total).toFixed(1).padStart(5)} %  ${name}\n`)
  }
}

table(
  'self time by function',
  ({ callFrame: f }) => `${f.functionName || '(anonymous)'}  ${where(f.url)}:${f.lineNumber + 1}`
)
table('self time by file', ({ callFrame: f }) =>
  where(f.url).replace(/^((@[^/]+\/)?[^/]+)\/.*$/, (whole, pkg) => (f.url.includes('node_modules/') ? pkg : whole))
)
