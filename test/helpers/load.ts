/** Runs `count` operations keeping `width` of them in flight; returns their results in start order. */
export async function inWaves<T>(count: number, width: number, operation: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count)
  let started = 0
  const lane = async () => {
    while (started < count) {
      const index = started++
      results[index] = await operation(index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, count) }, lane))
  return results
}

/** 1..n, to compare a set of numbers with the consecutive run it should be. */
export const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1)
