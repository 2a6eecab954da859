/** One scenario's figures, its one summary line, and the reasons it failed. */
import type { Verdict } from './verify.js'

export interface ScenarioResult {
  name: string
  faults: number
  requests: number
  /** Acknowledged writes looked up in PostgreSQL afterwards. */
  acked: number
  retries: number
  duplicates: number
  lost: number
  /** The slowest answer among the requests that met a fault (ms). */
  slowestMs: number
  problems: string[]
  /** Set when the scenario could not run here (a missing binary): reported loudly, neither passed nor failed. */
  skipped?: string
}

export const emptyResult = (name: string): ScenarioResult => ({
  name,
  faults: 0,
  requests: 0,
  acked: 0,
  retries: 0,
  duplicates: 0,
  lost: 0,
  slowestMs: 0,
  problems: []
})

export const passed = (result: ScenarioResult) => !result.skipped && result.problems.length === 0
export const failed = (result: ScenarioResult) => !result.skipped && result.problems.length > 0

export function summaryLine(result: ScenarioResult): string {
  if (result.skipped) return `faults: ${result.name}: *** SKIPPED: ${result.skipped} ***`
  const figures = [
    `${result.faults} fault${result.faults === 1 ? '' : 's'} injected`,
    `${result.requests} requests sent`,
    `${result.acked} acknowledged writes checked`,
    `${result.retries} retries`,
    `${result.duplicates} duplicates applied`,
    `${result.lost} writes lost`,
    `slowest answer during the fault ${result.slowestMs} ms`
  ]
  return `faults: ${result.name}: ${figures.join(', ')} — ${passed(result) ? 'passed' : `FAILED (${result.problems.length} problem${result.problems.length === 1 ? '' : 's'})`}`
}

/** What a scenario's load and its verification add to its result. */
export function tally(result: ScenarioResult, load: { requests: number; retries: number }, verdict: Verdict) {
  result.requests += load.requests
  result.acked += verdict.checked
  result.retries += load.retries
  result.duplicates += verdict.duplicates
  result.lost += verdict.lost
  result.problems.push(...verdict.problems)
}
