import type { Scenario } from '../scenario.js'

/** Every scenario `tandem loadtest <name>` can run, by name: one line each. */
export const scenarios: Record<string, Scenario> = {}
