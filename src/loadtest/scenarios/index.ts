import type { Scenario } from '../scenario.js'
import { rinha } from './rinha.js'
import { counter } from './counter.js'
import { increments } from './increments.js'
import { attendance } from './attendance.js'

/** Every scenario `tandem loadtest <name>` can run, by name: one line each. */
export const scenarios: Record<string, Scenario> = {
  rinha,
  counter,
  increments,
  attendance
}
