/**
 * A small seeded PRNG (mulberry32). Every case draws from its own generator, seeded by the run's seed
 * and the case's index, so one case can be rebuilt alone (FUZZ_ONLY) whatever ran before it.
 */
export class Random {
  private state: number

  constructor(seed: number) {
    this.state = seed >>> 0
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1))
  }

  chance(probability: number): boolean {
    return this.next() < probability
  }

  /** An item of a list, or a character of a string. */
  pick<T>(items: ArrayLike<T>): T {
    if (items.length === 0) throw new Error('pick from an empty list')
    return items[Math.floor(this.next() * items.length)]
  }

  /** One of the entries, each as likely as its weight. */
  weighted<T>(entries: ReadonlyArray<readonly [number, T]>): T {
    const total = entries.reduce((sum, [weight]) => sum + weight, 0)
    let point = this.next() * total
    for (const [weight, item] of entries) {
      point -= weight
      if (point < 0) return item
    }
    return entries[entries.length - 1][1]
  }
}

/** The generator of case `index` of run `seed` (a hash of both, so neighbouring cases are unrelated). */
export function caseRandom(seed: number, index: number): Random {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35)
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d)
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b)
  return new Random(h ^ (h >>> 16))
}
