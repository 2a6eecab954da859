/**
 * When each virtual user arrives, computed the way Gatling 3 computes its open injection steps
 * (io.gatling.core.controller.inject.open.OpenInjectionStep and io.gatling.core.util.Shard), so a
 * run sends the very count Gatling would, at the same instants within each second.
 */
import type { ArrivalStream, Stage } from './scenario.js'

export interface Scale {
  /** Multiplies every arrival rate. */
  rate: number
  /** Multiplies every stage's duration. */
  time: number
}

export function scaleStage(stage: Stage, scale: Scale): Stage {
  const durationS = Math.round(stage.durationS * scale.time * 1000) / 1000
  return stage.kind === 'ramp'
    ? { kind: 'ramp', from: stage.from * scale.rate, to: stage.to * scale.rate, durationS }
    : { kind: 'constant', rate: stage.rate * scale.rate, durationS }
}

/**
 * Users per whole second of a stage. Gatling truncates the duration to whole seconds
 * (`duration.toSeconds`); the next stage still starts after the full duration.
 */
export function usersPerSecond(stage: Stage): number[] {
  const seconds = Math.trunc(stage.durationS)
  if (seconds === 0) return []
  if (stage.kind === 'constant') {
    // ConstantRateOpenInjection: `(duration.toSeconds * rate).round`, sharded over the seconds.
    const users = Math.round(seconds * stage.rate)
    return users > 0 ? shards(users, seconds) : []
  }
  // RampRateOpenInjection: the rate at the middle of each second, the fraction carried over to the next.
  const { from, to } = stage
  if (from === 0 && to === 0) return []
  const a = (to - from) / (2 * seconds)
  const counts: number[] = []
  let pending = 0
  for (let s = 0; s < seconds; s++) {
    const users = a * (2 * s + 1) + from + pending
    // BigDecimal.setScale(10, HALF_UP).intValue: rounded at 10 decimals, then truncated.
    const whole = Math.trunc(Number(users.toFixed(10)))
    pending = users - whole
    counts.push(whole)
  }
  return counts
}

/**
 * Shard.shards: `total` spread over `count` buckets, the larger and smaller buckets interleaved
 * evenly (a second's users over its 1000 milliseconds, a constant stage's users over its seconds).
 */
export function shards(total: number, count: number): number[] {
  const small = Math.floor(total / count)
  const largeCount = total % count
  const smallCount = count - largeCount
  if (largeCount === 0) return new Array<number>(count).fill(small)
  if (smallCount === 0) return new Array<number>(count).fill(small + 1)
  return smallCount > largeCount
    ? interleave(smallCount, small, largeCount, small + 1, count)
    : interleave(largeCount, small + 1, smallCount, small, count)
}

/** `countA` > `countB`: (A × ratio, B) patterns, the larger value first in each, then the rest as A. */
function interleave(countA: number, valueA: number, countB: number, valueB: number, count: number): number[] {
  const ratio = Math.floor(countA / countB)
  const pattern =
    valueA >= valueB
      ? [...new Array<number>(ratio).fill(valueA), valueB]
      : [valueB, ...new Array<number>(ratio).fill(valueA)]
  const out: number[] = []
  for (let i = 0; i < countB; i++) out.push(...pattern)
  while (out.length < count) out.push(valueA)
  return out
}

/** Arrival offsets in ms from the stream's start, in order, lazily: a long run never holds them all. */
export function* arrivalOffsets(stages: Stage[]): Generator<number> {
  let startMs = 0
  for (const stage of stages) {
    const perSecond = usersPerSecond(stage)
    for (let s = 0; s < perSecond.length; s++) {
      if (perSecond[s] === 0) continue
      const perMs = shards(perSecond[s], 1000)
      for (let ms = 0; ms < 1000; ms++) {
        for (let u = 0; u < perMs[ms]; u++) yield startMs + s * 1000 + ms
      }
    }
    startMs += stage.durationS * 1000
  }
}

export function plannedUsers(stages: Stage[]): number {
  return stages.reduce((sum, stage) => sum + usersPerSecond(stage).reduce((a, b) => a + b, 0), 0)
}

export function durationMs(stages: Stage[]): number {
  return stages.reduce((sum, stage) => sum + stage.durationS * 1000, 0)
}

export function scaleStreams(streams: ArrivalStream[], scale: Scale): ArrivalStream[] {
  return streams.map((s) => ({ name: s.name, stages: s.stages.map((stage) => scaleStage(stage, scale)) }))
}

/** The stream's rate once its stages are over: what a closed model weighs it by, what --find-max multiplies. */
export function finalRate(stream: ArrivalStream): number {
  const last = stream.stages.at(-1)
  if (!last) return 0
  return last.kind === 'ramp' ? last.to : last.rate
}

interface Cursor {
  name: string
  offsets: Generator<number>
  dueMs: number | undefined
}

/**
 * Fires every arrival of every stream at its due time (timer granularity: about 1 ms) until all
 * streams are exhausted or the signal aborts. `fire` must not wait for the server.
 */
export function drive(
  streams: ArrivalStream[],
  clock: () => number,
  fire: (stream: string, dueMs: number) => void,
  signal: AbortSignal
): Promise<void> {
  const cursors: Cursor[] = streams.map((s) => {
    const offsets = arrivalOffsets(s.stages)
    return { name: s.name, offsets, dueMs: nextOf(offsets) }
  })
  return new Promise((resolve) => {
    const tick = () => {
      if (signal.aborted) return resolve()
      const now = clock()
      for (const c of cursors) {
        while (c.dueMs !== undefined && c.dueMs <= now) {
          fire(c.name, c.dueMs)
          c.dueMs = nextOf(c.offsets)
        }
      }
      const due = cursors.map((c) => c.dueMs).filter((ms): ms is number => ms !== undefined)
      if (due.length === 0) return resolve()
      setTimeout(tick, Math.max(0, Math.min(...due) - clock()))
    }
    signal.addEventListener('abort', () => resolve(), { once: true })
    tick()
  })
}

function nextOf(offsets: Generator<number>): number | undefined {
  const next = offsets.next()
  return next.done ? undefined : next.value
}
