import type { Scenario } from '../scenario.js'
import { rinha } from './rinha.js'

/** Every scenario `tandem loadtest <name>` can run, by name: one line each. */
export const scenarios: Record<string, Scenario> = {
  rinha
}
