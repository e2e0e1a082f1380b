// The report as an SVG chart: every plugin variant's ratio to its baseline beside the ratios of
// the hand-written ceilings for the same store and scenario, grouped by scenario (one hot key,
// many keys, always a miss, ...) and store. Hand-written SVG, no dependency.
//
// `npm run bench` writes it next to the JSON (latest.json -> latest.svg). From a saved run:
//
//   node benchmarks/runner/chart.js benchmarks/results/latest.json benchmarks/results/latest.svg
//
// Bars: the median over the rounds of sample / mean of the two bracketing baseline samples (the
// table's "× baseline", "× raw" for the variants measured against raw). Whiskers: the lowest and
// highest per-round ratio. Ticks: the variant's target, when it has one. Each plugin variant is
// drawn just above its own ceiling (variants.js `ceiling`, the table's "× ceiling", whose ratio
// is printed after the plugin's), then the other ceilings of the same store and scenario.

import { readFileSync, writeFileSync, mkdirSync, realpathSync } from 'node:fs'
import { dirname } from 'node:path'
import { pathToFileURL } from 'node:url'
import { loadGenerator } from './report.js'

// Which other ceilings a plugin variant is drawn beside, after its own (when they are in the
// run: --quick and --no-ceilings leave them out). Scenario and store of any other variant come
// from its name and baseline, so a variant added later still gets a row.
const CEILINGS = {
  'memory-hit': ['ceil-map', 'ceil-string'],
  'redis-hit': ['ceil-ioredis-shared'],
  'memcached-hit': ['ceil-memjs-shared'],
  'redis-miss': ['ceil-ioredis-lookup'],
  'memcached-miss': ['ceil-memjs-lookup'],
}

const SCENARIOS = [
  { id: 'uncached', title: 'Route without config.cache', match: (r) => r.baseline === 'raw' && r.kind === 'origin' },
  { id: 'hit', title: 'Hit, one hot key', match: (r) => r.baseline === 'raw' && r.kind === 'hit' },
  { id: 'many', title: 'Hit, 10,000 keys cycling', match: (r) => r.baseline === 'raw-many' },
  { id: 'miss', title: 'Always a miss, 20 ms origin', match: (r) => r.baseline === 'slow-uncached' && r.kind === 'miss' },
]
const STORES = ['memory', 'redis', 'memcached']

const COLORS = { plugin: '#2563eb', pluginFailed: '#dc2626', ceiling: '#9ca3af', text: '#111827', muted: '#6b7280', grid: '#e5e7eb', axis: '#111827', target: '#b45309' }

const WIDTH = 1300
const LABEL_W = 330
const PLOT_X = LABEL_W + 10
// Room on the right for a value label such as "0.68× (target 0.95 missed) · 0.77× ceiling (≥ 0.97 missed)".
const PLOT_W = WIDTH - PLOT_X - 430
const ROW = 20
const BAR = 13

/** The chart's rows: [{ scenario, groups: [{ store, baseline, rows: [{ result, ceiling }] }] }]. */
export function chartRows (report) {
  const byName = new Map(report.results.map((r) => [r.name, r]))
  const used = new Set()
  const sections = []
  for (const scenario of SCENARIOS) {
    const plugins = report.results.filter((r) => !r.kind.startsWith('ceiling') && r.ratio !== undefined && scenario.match(r))
    if (plugins.length === 0) continue
    const groups = []
    for (const store of [...STORES, undefined]) {
      const mine = plugins.filter((r) => storeOf(r.name) === store)
      if (mine.length === 0) continue
      // Plugin variants that share a ceiling (redis-many, redis-many-tag1), then that ceiling.
      const rows = []
      const drawable = (name) => byName.get(name)?.ratio !== undefined && !used.has(name)
      for (const own of [...new Set(mine.map((r) => r.ceiling?.name))]) {
        rows.push(...mine.filter((r) => r.ceiling?.name === own).map((result) => ({ result, ceiling: false })))
        if (own !== undefined && drawable(own)) {
          used.add(own)
          rows.push({ result: byName.get(own), ceiling: true })
        }
      }
      const extra = [...new Set(mine.flatMap((r) => CEILINGS[r.name] ?? []))].filter(drawable)
      for (const name of extra) used.add(name)
      rows.push(...extra.map((name) => ({ result: byName.get(name), ceiling: true })))
      groups.push({ store, baseline: mine[0].baseline, rows })
    }
    sections.push({ scenario, groups })
  }
  // Ceilings no plugin variant was paired with (a new one) still show, in their own section.
  const rest = report.results.filter((r) => r.kind.startsWith('ceiling') && r.ratio !== undefined && !used.has(r.name))
  if (rest.length > 0) {
    sections.push({
      scenario: { id: 'other', title: 'Other ceilings' },
      groups: [{ store: undefined, baseline: undefined, rows: rest.map((result) => ({ result, ceiling: true })) }],
    })
  }
  return sections
}

function storeOf (name) {
  return STORES.find((s) => name === s || name.startsWith(`${s}-`) || name.includes(`-${s}`)) ??
    (name.includes('ioredis') ? 'redis' : name.includes('memjs') ? 'memcached' : undefined)
}

/** The SVG text for a report as benchmarks/run.js writes it. */
export function renderChart (report) {
  const sections = chartRows(report)
  const all = sections.flatMap((s) => s.groups.flatMap((g) => g.rows))
  const hasCeilings = all.some((r) => r.ceiling)
  const top = 118
  const values = all.flatMap(({ result: r }) => [r.ratio, ...(r.ratios ?? []), r.target ?? 0])
  const max = Math.max(1.2, ...values.filter(Number.isFinite))
  const step = max > 2.5 ? 0.5 : max > 1.4 ? 0.25 : 0.2
  const xMax = Math.ceil((max * 1.03) / step) * step
  const x = (v) => PLOT_X + (Math.max(0, v) / xMax) * PLOT_W

  const body = []
  let y = top
  for (const { scenario, groups } of sections) {
    y += 8
    const bases = [...new Set(groups.map((g) => g.baseline).filter(Boolean))]
    body.push(text(12, y + 13, scenario.title, { weight: 700, size: 14 }) +
      (bases.length > 0 ? text(12 + scenario.title.length * 8 + 14, y + 13, `× ${bases.join(', ')}`, { size: 12, fill: COLORS.muted }) : ''))
    y += 22
    for (const group of groups) {
      const groupTop = y
      for (const row of group.rows) {
        body.push(drawRow(row, y, x))
        y += ROW
      }
      body.push(text(12, groupTop + 14, group.store ?? '', { size: 12, fill: COLORS.muted, weight: 600 }))
      body.push(`<line x1="100" x2="${WIDTH - 12}" y1="${y + 3}" y2="${y + 3}" stroke="${COLORS.grid}" stroke-width="1"/>`)
      y += 7
    }
  }
  const plotBottom = y + 4
  const height = plotBottom + 74

  // Grid and axis, drawn under the bars.
  const grid = []
  for (let v = 0; v <= xMax + 1e-9; v += step) {
    const gx = x(v).toFixed(1)
    const one = Math.abs(v - 1) < 1e-9
    grid.push(`<line x1="${gx}" x2="${gx}" y1="${top - 6}" y2="${plotBottom}" stroke="${one ? COLORS.axis : COLORS.grid}" stroke-width="${one ? 1.5 : 1}"${one ? '' : ' stroke-dasharray="3 3"'}/>`)
    grid.push(text(Number(gx), top - 10, `${v.toFixed(step < 0.25 ? 1 : 2).replace(/0$/, '')}×`, { size: 11, anchor: 'middle', fill: one ? COLORS.text : COLORS.muted, weight: one ? 700 : 400 }))
    grid.push(text(Number(gx), plotBottom + 14, `${v.toFixed(step < 0.25 ? 1 : 2).replace(/0$/, '')}×`, { size: 11, anchor: 'middle', fill: one ? COLORS.text : COLORS.muted, weight: one ? 700 : 400 }))
  }
  grid.push(text(x(1) + 4, plotBottom + 28, '1.0× = the baseline (Fastify without the plugin, same route and load)', { size: 11, fill: COLORS.text }))

  const c = report.config ?? {}
  const m = report.machine ?? {}
  const when = report.date ? report.date.replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC') : ''
  const runKind = c.quick ? 'quick run' : 'run'
  const noise = Math.max(0, ...report.results.flatMap((r) => r.noise ?? []).filter(Number.isFinite))
  const header = [
    text(12, 26, 'fastify-server-cache: throughput relative to Fastify without the plugin', { size: 18, weight: 700 }),
    text(12, 46, `${runKind} of ${when}: ${c.rounds} rounds of ${c.duration} s samples, ${loadGenerator(c)} -c ${c.connections}; ${m.nproc} CPUs, Node ${m.node}, redis ${m.redis}, memcached ${m.memcached}; other load up to ${Math.round(noise * 100)}%`,
      { size: 12, fill: noise > (c.noiseLimit ?? 0.1) ? COLORS.pluginFailed : COLORS.muted }),
    legend(12, 70, hasCeilings),
  ]
  const problems = report.problems?.length ?? 0
  // Older runs drew the one-key ceilings (× raw) beside the many-keys hits.
  const manyCeilings = sections.some((s) => s.scenario.id === 'many' && s.groups.some((g) => g.rows.some((r) => r.ceiling && r.result.baseline !== 'raw-many')))
  const footer = [
    text(12, height - 30, 'Bar: median over the rounds of (sample ÷ mean of the two baseline samples around it). Whisker: lowest to highest round. ' +
      (hasCeilings ? 'Grey: hand-written ceilings (benchmarks/servers).' : 'No ceiling variants in this run (--quick or --no-ceilings).'), { size: 11, fill: COLORS.muted }),
    text(12, height - 14, `${manyCeilings ? 'Many-keys hits are × raw-many, their ceilings × raw. ' : ''}${problems === 0 ? 'All checks passed.' : `${problems} check(s) failed: rows in red.`} Source: benchmarks/run.js, see benchmarks/README.md.`,
      { size: 11, fill: problems === 0 ? COLORS.muted : COLORS.pluginFailed }),
  ]

  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="-apple-system, 'Segoe UI', Helvetica, Arial, 'DejaVu Sans', sans-serif">`,
    `<title>fastify-server-cache benchmark ratios, ${esc(when)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    ...header,
    ...grid,
    ...body,
    ...footer,
    '</svg>',
    '',
  ].join('\n')
}

function drawRow ({ result: r, ceiling }, y, x) {
  const failed = r.ok === false
  const fill = ceiling ? COLORS.ceiling : failed ? COLORS.pluginFailed : COLORS.plugin
  const out = []
  const label = ceiling ? r.name : `${r.name}${failed ? ' (FAILED)' : ''}`
  out.push(text(PLOT_X - 8, y + 14, label, { size: 12, anchor: 'end', fill: ceiling ? COLORS.muted : failed ? COLORS.pluginFailed : COLORS.text, weight: ceiling ? 400 : 600 }))
  const x0 = x(0)
  const x1 = x(r.ratio)
  const tip = `${r.name}: ${r.ratio.toFixed(2)}× ${r.baseline}${r.ratios ? ` (rounds: ${r.ratios.map((v) => v.toFixed(2)).join(' / ')})` : ''}; ${Math.round(r.rps).toLocaleString('en-US')} req/s; ${r.what ?? ''}`
  out.push(`<rect x="${x0.toFixed(1)}" y="${(y + (ROW - BAR) / 2 + 1).toFixed(1)}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${BAR}" rx="2" fill="${fill}"><title>${esc(tip)}</title></rect>`)
  const ratios = (r.ratios ?? []).filter(Number.isFinite)
  let valueX = x1
  if (ratios.length > 1) {
    const lo = x(Math.min(...ratios))
    const hi = x(Math.max(...ratios))
    const cy = y + ROW / 2 + 1
    out.push(`<path d="M${lo.toFixed(1)} ${cy}H${hi.toFixed(1)}M${lo.toFixed(1)} ${cy - 4}V${cy + 4}M${hi.toFixed(1)} ${cy - 4}V${cy + 4}" stroke="${COLORS.text}" stroke-width="1" fill="none" opacity="0.7"/>`)
    valueX = Math.max(valueX, hi)
  }
  if (r.target !== undefined) {
    const tx = x(r.target)
    out.push(`<path d="M${tx.toFixed(1)} ${y + 1}v${ROW - 2}" stroke="${COLORS.target}" stroke-width="2.5"><title>target ≥ ${r.target.toFixed(2)}×</title></path>`)
    if (tx > valueX) valueX = tx
  }
  const met = r.met === undefined ? '' : r.met ? '' : ` (target ${r.target.toFixed(2)} missed)`
  // The plugin variant against its own ceiling (drawn below it), with that target's outcome.
  const own = ceiling || r.ceiling === undefined
    ? ''
    : ` · ${r.ceiling.ratio.toFixed(2)}× ceiling${r.ceiling.target === undefined ? '' : ` (≥ ${r.ceiling.target.toFixed(2)} ${r.ceiling.met ? 'met' : 'missed'})`}`
  out.push(text(valueX + 6, y + 14, `${r.ratio.toFixed(2)}×${met}${own}`, { size: 12, fill: ceiling ? COLORS.muted : COLORS.text, weight: ceiling ? 400 : 600 }))
  return out.join('\n')
}

function legend (x0, y, hasCeilings) {
  const items = [
    [`<rect x="${x0}" y="${y - 10}" width="14" height="12" rx="2" fill="${COLORS.plugin}"/>`, 'plugin variant'],
    ...(hasCeilings ? [[`<rect x="0" y="${y - 10}" width="14" height="12" rx="2" fill="${COLORS.ceiling}"/>`, 'hand-written ceiling, same store']] : []),
    [`<path d="M7 ${y - 11}v14" stroke="${COLORS.target}" stroke-width="2.5"/>`, 'target'],
    [`<path d="M0 ${y - 4}h14M0 ${y - 8}v8M14 ${y - 8}v8" stroke="${COLORS.text}" stroke-width="1" fill="none"/>`, 'range over rounds'],
  ]
  const out = []
  let cx = x0
  for (const [shape, label] of items) {
    out.push(`<g transform="translate(${cx === x0 ? 0 : cx},0)">${shape}</g>`)
    out.push(text((cx === x0 ? x0 : cx) + 20, y, label, { size: 12 }))
    cx += 20 + label.length * 7 + 24
  }
  return out.join('\n')
}

function text (x, y, s, { size = 12, weight = 400, anchor = 'start', fill = COLORS.text } = {}) {
  return `<text x="${typeof x === 'number' ? x.toFixed(1) : x}" y="${y}" font-size="${size}"${weight === 400 ? '' : ` font-weight="${weight}"`}${anchor === 'start' ? '' : ` text-anchor="${anchor}"`} fill="${fill}">${esc(s)}</text>`
}

function esc (s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** Write the chart for `report` to `file` (its directory created). */
export function writeChart (report, file) {
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, renderChart(report))
}

// Standalone: node benchmarks/runner/chart.js <latest.json> <out.svg>
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  const [input, output] = process.argv.slice(2)
  if (input === undefined || output === undefined) {
    console.error('usage: node benchmarks/runner/chart.js <latest.json> <out.svg>')
    process.exit(2)
  }
  writeChart(JSON.parse(readFileSync(input, 'utf8')), output)
  console.log(`chart: ${output}`)
}
