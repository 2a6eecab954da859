import type { Random } from './scenario.js'

const alphanumerics = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'

/** mulberry32: small, fast and good enough to pick clients and amounts; the same seed, the same run. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    alphanumeric: (length) => {
      let text = ''
      for (let i = 0; i < length; i++) text += alphanumerics[Math.floor(next() * alphanumerics.length)]
      return text
    }
  }
}
