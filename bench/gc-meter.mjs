/* global process */
/**
 * Preloaded (NODE_OPTIONS=--import) into every Node.js server bench:closed starts, Tandem's and the
 * baselines' alike: what the process allocates and what its garbage collector costs over a measured
 * window, for figures per request (GC pauses set the tail). SIGUSR2 opens a window, the next closes
 * it and writes the window's figures to BENCH_GC_FILE (JSON, replaced whole): its number, the bytes
 * allocated on the V8 heap (each collection's heap before it, less what the collection before left),
 * and the count and pause time of scavenges (young generation), mark-compacts and the other steps
 * (incremental marking, weak callbacks), from one v8.GCProfiler per window. (A GCProfiler stopped
 * and started again leaves some of its cost behind in every later collection: restarted every
 * 100 ms, the GC of a plain loop took 10× longer within 10 s. One per window adds nothing measurable.)
 *
 * With BENCH_ALLOC_PROFILE set, the first window also starts V8's sampling heap profiler (collected
 * objects included, one sample per 16 KiB on average), and each window's end writes what it has
 * sampled since then there: a .heapprofile (`npx tsx bench/profile.ts FILE`, or Chrome DevTools'
 * Memory tab) of where the allocations of every window so far came from.
 */
import { renameSync, writeFileSync } from 'node:fs'
import inspector from 'node:inspector'
import { GCProfiler, getHeapStatistics } from 'node:v8'

const file = process.env.BENCH_GC_FILE
const profileFile = process.env.BENCH_ALLOC_PROFILE

/** Written whole, so a reader never sees half a file. */
function replace(path, text) {
  writeFileSync(`${path}.tmp`, text)
  renameSync(`${path}.tmp`, path)
}

if (file) {
  const session = profileFile ? new inspector.Session() : undefined
  session?.connect()
  let window = 0
  let open
  process.on('SIGUSR2', () => {
    if (!open) {
      if (window === 0 && session) {
        session.post('HeapProfiler.enable')
        session.post('HeapProfiler.startSampling', {
          samplingInterval: 16_384,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: true
        })
      }
      open = { profiler: new GCProfiler(), heapAtStart: getHeapStatistics().used_heap_size }
      open.profiler.start()
      return
    }
    const { statistics } = open.profiler.stop()
    const figures = {
      window: ++window,
      allocatedBytes: 0,
      scavenges: 0,
      scavengeMs: 0,
      markCompacts: 0,
      markCompactMs: 0,
      otherMs: 0
    }
    let leftByLast = open.heapAtStart
    open = undefined
    for (const gc of statistics) {
      figures.allocatedBytes += Math.max(0, gc.beforeGC.heapStatistics.usedHeapSize - leftByLast)
      leftByLast = gc.afterGC.heapStatistics.usedHeapSize
      const ms = gc.cost / 1000
      if (gc.gcType === 'Scavenge' || gc.gcType === 'MinorMarkSweep') {
        figures.scavenges++
        figures.scavengeMs += ms
      } else if (gc.gcType === 'MarkSweepCompact') {
        figures.markCompacts++
        figures.markCompactMs += ms
      } else figures.otherMs += ms
    }
    figures.allocatedBytes += Math.max(0, getHeapStatistics().used_heap_size - leftByLast)
    replace(file, JSON.stringify(figures))
    session?.post('HeapProfiler.getSamplingProfile', (error, result) => {
      if (!error) replace(profileFile, JSON.stringify(result.profile))
    })
  })
}
