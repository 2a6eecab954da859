/* global process, setInterval */
/**
 * Preloaded (NODE_OPTIONS=--import) into every Node.js server bench:closed starts, Tandem's and the
 * baselines' alike: what the process allocates and what its garbage collector costs, for the figures
 * per request (GC pauses set the tail). Ten times a second it writes its running totals to
 * BENCH_GC_FILE (JSON, replaced whole): bytes allocated on the V8 heap (each collection's heap before
 * it, less the heap the collection before left), and the count and pause time of scavenges (young
 * generation), mark-compacts and the other steps (incremental marking, weak callbacks).
 *
 * With BENCH_ALLOC_PROFILE set, a first SIGUSR2 starts sampling where the allocations come from
 * (V8's sampling heap profiler, collected objects included, one sample per 16 KiB on average) and a
 * second writes that profile there (a .heapprofile: `npx tsx bench/profile.ts FILE`, or Chrome
 * DevTools' Memory tab).
 */
import { renameSync, writeFileSync } from 'node:fs'
import inspector from 'node:inspector'
import { GCProfiler, getHeapStatistics } from 'node:v8'

const file = process.env.BENCH_GC_FILE
if (file) {
  const totals = { allocatedBytes: 0, scavenges: 0, scavengeMs: 0, markCompacts: 0, markCompactMs: 0, otherMs: 0 }
  let leftByLast = getHeapStatistics().used_heap_size
  let profiler = new GCProfiler()
  profiler.start()
  const write = () => {
    const { statistics } = profiler.stop()
    profiler = new GCProfiler()
    profiler.start()
    for (const gc of statistics) {
      totals.allocatedBytes += Math.max(0, gc.beforeGC.heapStatistics.usedHeapSize - leftByLast)
      leftByLast = gc.afterGC.heapStatistics.usedHeapSize
      const ms = gc.cost / 1000
      if (gc.gcType === 'Scavenge' || gc.gcType === 'MinorMarkSweep') {
        totals.scavenges++
        totals.scavengeMs += ms
      } else if (gc.gcType === 'MarkSweepCompact') {
        totals.markCompacts++
        totals.markCompactMs += ms
      } else totals.otherMs += ms
    }
    const sinceLast = Math.max(0, getHeapStatistics().used_heap_size - leftByLast)
    writeFileSync(`${file}.tmp`, JSON.stringify({ ...totals, allocatedBytes: totals.allocatedBytes + sinceLast }))
    renameSync(`${file}.tmp`, file)
  }
  setInterval(write, 100).unref()
}

const profileFile = process.env.BENCH_ALLOC_PROFILE
if (profileFile) {
  const session = new inspector.Session()
  session.connect()
  let sampling = false
  process.on('SIGUSR2', () => {
    if (!sampling) {
      sampling = true
      session.post('HeapProfiler.enable')
      session.post('HeapProfiler.startSampling', {
        samplingInterval: 16_384,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true
      })
      return
    }
    sampling = false
    session.post('HeapProfiler.stopSampling', (error, result) => {
      if (!error) writeFileSync(profileFile, JSON.stringify(result.profile))
    })
  })
}
