/** Counting cases by family, grouping failures by cause, and printing each with a way to rerun it. */
import type { Case } from './cases.js'
import { snippet, type Problem } from './checks.js'

interface Example {
  index: number | undefined
  what: string
  request: string
  answer: string
  note: string
}

interface Group {
  check: string
  route: string
  count: number
  statuses: Set<string>
  examples: Example[]
}

const examplesPerGroup = 3

export class Tally {
  private readonly families = new Map<string, { passed: number; failed: number }>()
  private readonly groups = new Map<string, Group>()
  /** Statuses answered, by route: what each route's cases reached (FUZZ_VERBOSE prints them). */
  private readonly outcomes = new Map<string, Map<string, number>>()
  passed = 0
  failed = 0

  constructor(private readonly seed: number) {}

  /** One case (or one global check, `index` undefined) and what was wrong with it, if anything. */
  record(
    family: string,
    route: string,
    index: number | undefined,
    problems: Problem[],
    detail: { what: string; request: string; answer: string; status?: string }
  ) {
    if (index !== undefined) {
      const statuses = this.outcomes.get(route) ?? new Map<string, number>()
      this.outcomes.set(route, statuses)
      statuses.set(detail.status ?? '-', (statuses.get(detail.status ?? '-') ?? 0) + 1)
    }
    const counts = this.families.get(family) ?? { passed: 0, failed: 0 }
    this.families.set(family, counts)
    if (problems.length === 0) {
      counts.passed++
      this.passed++
      return
    }
    counts.failed++
    this.failed++
    for (const problem of problems) {
      const key = `${problem.check}\u0000${route}`
      const group = this.groups.get(key) ?? { check: problem.check, route, count: 0, statuses: new Set(), examples: [] }
      this.groups.set(key, group)
      group.count++
      if (detail.status) group.statuses.add(detail.status)
      // Examples that differ in what they tried say more than three of the same.
      const fresh = !group.examples.some((example) => example.what === detail.what)
      if (group.examples.length < examplesPerGroup && fresh)
        group.examples.push({
          index,
          what: detail.what,
          request: detail.request,
          answer: detail.answer,
          note: problem.note
        })
    }
  }

  printOutcomes(log: (line: string) => void) {
    log('')
    log('statuses by route:')
    for (const [route, statuses] of [...this.outcomes].sort(([x], [y]) => x.localeCompare(y))) {
      const total = [...statuses.values()].reduce((sum, n) => sum + n, 0)
      const shown = [...statuses]
        .sort((x, y) => y[1] - x[1])
        .map(([status, n]) => `${status}×${n}`)
        .join(' ')
      log(`  ${route}: ${total} — ${shown}`)
    }
  }

  print(log: (line: string) => void) {
    log('')
    log('cases by route family:')
    const width = Math.max(...[...this.families.keys()].map((name) => name.length))
    for (const [family, { passed, failed }] of [...this.families].sort(([x], [y]) => x.localeCompare(y))) {
      log(
        `  ${family.padEnd(width)}  ${String(passed + failed).padStart(6)} cases  ${String(failed).padStart(5)} failed`
      )
    }
    log(
      `  ${'total'.padEnd(width)}  ${String(this.passed + this.failed).padStart(6)} cases  ${String(this.failed).padStart(5)} failed`
    )
    if (this.groups.size === 0) return
    log('')
    log(`failures, grouped by cause and route (${this.groups.size} groups):`)
    const groups = [...this.groups.values()].sort((x, y) => x.check.localeCompare(y.check) || y.count - x.count)
    for (const group of groups) {
      const statuses = group.statuses.size > 0 ? ` [status ${[...group.statuses].sort().join(', ')}]` : ''
      log(`- ${group.check} — ${group.route}: ${group.count} case${group.count === 1 ? '' : 's'}${statuses}`)
      for (const example of group.examples) {
        const rerun =
          example.index === undefined ? '' : ` (FUZZ_SEED=${this.seed} FUZZ_ONLY=${example.index} npm run test:fuzz)`
        log(`    case ${example.index ?? '-'}: ${example.what}${rerun}`)
        log(`      request: ${example.request}`)
        log(`      answer:  ${example.answer}`)
        log(`      why:     ${example.note}`)
      }
    }
  }
}

const shorten = (text: string, max: number) =>
  text.length > max ? `${text.slice(0, max)}…(${text.length} chars)` : text

/** The request as it went on the wire, shortened: method, path, headers, body. */
export function describeRequest(c: Case): string {
  if (c.kind === 'raw') {
    return c.steps
      .map((step) => (Buffer.isBuffer(step) ? snippet(step.toString('latin1'), 240) : `<pause ${step.pauseMs} ms>`))
      .join(' ')
  }
  const headers = Object.entries(c.headers)
    .map(([name, value]) => `${name}: ${shorten(value, 60)}`)
    .join(' | ')
  const body =
    c.body === undefined ? '' : ` body ${snippet(Buffer.isBuffer(c.body) ? c.body.toString('latin1') : c.body, 200)}`
  return `${c.method} ${shorten(c.path, 160)}${headers ? ` [${headers}]` : ''}${body}`
}
