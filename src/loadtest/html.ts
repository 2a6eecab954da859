import { readFile, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import type { Figures } from './report.js'

/**
 * Chart.js's UMD build, found in the installed package (its `exports` map names only the ESM and
 * CommonJS entries, so the UMD file is located next to the CommonJS one).
 */
async function chartJs(): Promise<string> {
  const entry = createRequire(import.meta.url).resolve('chart.js')
  return readFile(path.join(path.dirname(entry), 'chart.umd.js'), 'utf8')
}

/** JSON safe inside a <script> element: no `</script>`, no `<!--`. */
function scriptSafe(json: string): string {
  return json
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029')
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)

/** Runs in the page: draws the four charts and the summary table from the embedded figures. */
const pageScript = `
'use strict'
const figures = JSON.parse(document.getElementById('figures').textContent)
const seconds = figures.series.map((s) => s.second)
const common = {
  animation: false,
  responsive: true,
  maintainAspectRatio: false,
  interaction: { mode: 'index', intersect: false },
  plugins: { legend: { position: 'bottom' } }
}
const axes = (x, y) => ({ x: { title: { display: true, text: x } }, y: { beginAtZero: true, title: { display: true, text: y } } })
// The 1 %-wide buckets of the figures, merged 20 %-wide for a readable chart.
const coarse = new Map()
for (const bin of figures.histogram) {
  const upTo = 1.2 ** Math.ceil(Math.log(Math.max(bin.upToMs, 0.01)) / Math.log(1.2))
  coarse.set(upTo, (coarse.get(upTo) ?? 0) + bin.count)
}
const line = (label, data, color) => ({ label, data, borderColor: color, backgroundColor: color, pointRadius: 0, borderWidth: 2 })
window.loadtestCharts = [
  new Chart(document.getElementById('throughput'), {
    type: 'line',
    data: { labels: seconds, datasets: [line('answers/s', figures.series.map((s) => s.perS), '#2563eb'), line('sent/s', figures.series.map((s) => s.sent), '#9ca3af')] },
    options: { ...common, scales: axes('second', 'requests per second') }
  }),
  new Chart(document.getElementById('latency'), {
    type: 'line',
    data: { labels: seconds, datasets: [line('p50', figures.series.map((s) => s.p50Ms), '#16a34a'), line('p99', figures.series.map((s) => s.p99Ms), '#dc2626')] },
    options: { ...common, scales: axes('second', 'ms') }
  }),
  new Chart(document.getElementById('errors'), {
    type: 'bar',
    data: { labels: seconds, datasets: [{ label: 'KO/s', data: figures.series.map((s) => s.ko), backgroundColor: '#dc2626' }] },
    options: { ...common, scales: axes('second', 'KO per second') }
  }),
  new Chart(document.getElementById('histogram'), {
    type: 'bar',
    data: { labels: [...coarse.keys()].map((ms) => ms < 10 ? ms.toFixed(1) : ms.toFixed(0)), datasets: [{ label: 'answers', data: [...coarse.values()], backgroundColor: '#7c3aed' }] },
    options: { ...common, scales: axes('latency up to (ms)', 'answers') }
  })
]
const table = document.getElementById('groups')
for (const [name, g] of [...Object.entries(figures.groups), ['all', { total: figures.requests.total, ok: figures.requests.ok, ko: figures.requests.ko, latencyMs: figures.latencyMs }]]) {
  const row = table.insertRow()
  for (const cell of [name, g.total, g.ok, g.ko, g.latencyMs.p50, g.latencyMs.p90, g.latencyMs.p99, g.latencyMs.p999, g.latencyMs.max]) {
    row.insertCell().textContent = String(cell)
  }
}
document.body.dataset.drawn = 'true'
`

export async function renderHtml(figures: Figures): Promise<string> {
  const title = `tandem loadtest ${figures.scenario}: ${figures.passed ? 'PASSED' : 'FAILED'}`
  const verdict = figures.passed
    ? 'every check held'
    : `${figures.requests.ko} KO, ${figures.consistency.failures} consistency failure(s)${figures.interrupted ? ', interrupted' : ''}`
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>${escapeHtml(title)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #111827 }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(28rem, 1fr)); gap: 1.5rem }
.chart { position: relative; height: 18rem }
table { border-collapse: collapse; margin: 1rem 0 }
td, th { padding: .2rem .6rem; text-align: right; border-bottom: 1px solid #e5e7eb }
td:first-child, th:first-child { text-align: left }
.failed { color: #b91c1c } .passed { color: #15803d }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="${figures.passed ? 'passed' : 'failed'}">${escapeHtml(verdict)}</p>
<p>${escapeHtml(`${figures.target}, ${figures.model} model, started ${figures.startedAt}: ${figures.requests.total} requests, ${figures.throughput.perS} req/s over ${figures.throughput.loadElapsedS} s of load`)}</p>
<table id="groups"><tr><th>group</th><th>total</th><th>OK</th><th>KO</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr></table>
<div class="charts">
<section><h2>Throughput</h2><div class="chart"><canvas id="throughput"></canvas></div></section>
<section><h2>Latency percentiles</h2><div class="chart"><canvas id="latency"></canvas></div></section>
<section><h2>Errors (KO)</h2><div class="chart"><canvas id="errors"></canvas></div></section>
<section><h2>Latency histogram</h2><div class="chart"><canvas id="histogram"></canvas></div></section>
</div>
<script type="application/json" id="figures">${scriptSafe(JSON.stringify(figures))}</script>
<script>${await chartJs()}</script>
<script>${pageScript}</script>
</body>
</html>
`
}

export async function writeHtml(file: string, figures: Figures) {
  await writeFile(file, await renderHtml(figures))
}
