/**
 * The self time of a V8 .cpuprofile (`node --cpu-prof`), or the bytes allocated of a .heapprofile
 * (a sampling heap profile), summed by function and by file: where the CPU went, or the
 * allocations came from, for `bench:closed -- --cpu-prof DIR` or `-- --alloc-prof DIR`.
 *   npx tsx bench/profile.ts DIR/CPU.*.cpuprofile [--top 30]
 *   npx tsx bench/profile.ts DIR/tandem.heapprofile
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
/** A sampling heap profile: a tree of call frames, each with the bytes allocated right there. */
interface HeapNode extends Node {
  selfSize: number
  children: HeapNode[]
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '30' } }
})
const top = Number(values.top)
const read = JSON.parse(await readFile(positionals[0], 'utf8')) as Profile | { head: HeapNode }
const byId = new Map<number, Node>()
/** Per node: µs of self time, or bytes allocated. */
const self = new Map<number, number>()
if ('head' in read) {
  for (const pending = [read.head]; pending.length > 0;) {
    const node = pending.pop()!
    byId.set(node.id, node)
    self.set(node.id, node.selfSize)
    pending.push(...node.children)
  }
} else {
  for (const node of read.nodes) byId.set(node.id, node)
  read.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (read.timeDeltas[i] ?? 0)))
}
const total = [...self.values()].reduce((a, b) => a + b, 0)
const [measure, totalText] =
  'head' in read
    ? ['bytes allocated', `${(total / 2 ** 20).toFixed(1)} MiB`]
    : ['self time', `${(total / 1e6).toFixed(2)} s`]

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
  for (const [id, amount] of self) {
    const name = key(byId.get(id)!)
    sums.set(name, (sums.get(name) ?? 0) + amount)
  }
  process.stdout.write(`\n${measure} by ${title} (total ${totalText})\n`)
  for (const [name, amount] of [...sums].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${((100 * amount) / total).toFixed(1).padStart(5)} %  ${name}\n`)
  }
}

table('function', ({ callFrame: f }) => `${f.functionName || '(anonymous)'}  ${where(f.url)}:${f.lineNumber + 1}`)
table('file', ({ callFrame: f }) =>
  where(f.url).replace(/^((@[^/]+\/)?[^/]+)\/.*$/, (whole, pkg) => (f.url.includes('node_modules/') ? pkg : whole))
)
