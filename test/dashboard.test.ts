// The Grafana dashboard (dashboards/fastify-server-cache.json), checked statically: it parses,
// every panel can run (title, datasource, targets), and its PromQL names only the metrics the
// plugin exposes (API.md, "Metrics"), each of them somewhere.

import { readFileSync } from 'node:fs'
import t from 'tap'

const file = new URL('../dashboards/fastify-server-cache.json', import.meta.url)
const PREFIX = 'fastify_cache_'
// Grafana's placeholders, spelled so that no linter takes them for a template literal gone wrong.
const PREFIX_VAR = '$' + '{prefix}'
const DS_UID = '$' + '{DS_PROMETHEUS}'
const METRICS = [
  'requests_total',
  'store_operation_seconds',
  'store_errors_total',
  'breaker_open',
  'fallback_active',
  'invalidations_total',
  'memory_store_bytes',
  'memory_store_entries',
]
const OUTCOMES = ['hit', 'miss', 'stale', 'bypass']

// PromQL words that are not metric names: keywords, and aggregation modifiers.
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan'])

/**
 * The metric names an expression selects. Strings, label matchers (`{...}`), ranges (`[5m]`)
 * and grouping label lists (`by (...)`) are removed first; what remains is identifiers, and
 * those not followed by `(` (functions, aggregations) and not keywords are metric names.
 * Grafana's `${prefix}` is filled in with the default prefix.
 */
function metricNames (expr: string): string[] {
  const s = expr
    .replace(/\$\{prefix\}|\$prefix\b/g, PREFIX)
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ')
  const names: string[] = []
  for (const m of s.matchAll(/(?<![\w.:])([a-zA-Z_:][\w:]*)(?=\s*(\(?))/g)) {
    if (m[2] === '(' || KEYWORDS.has(m[1].toLowerCase())) continue
    names.push(m[1])
  }
  return names
}

/** A selected series name without the prefix and the histogram suffixes. */
function baseName (name: string): string {
  return name.replace(new RegExp(`^${PREFIX}`), '').replace(/_(bucket|sum|count)$/, '')
}

const text = readFileSync(file, 'utf8')
let dashboard: any

t.test('the dashboard is valid JSON for Grafana to import', async (t) => {
  t.doesNotThrow(() => { dashboard = JSON.parse(text) }, 'it parses')
  t.type(dashboard.title, 'string')
  t.type(dashboard.uid, 'string')
  t.ok(dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 41, `schemaVersion ${dashboard.schemaVersion} is a current one`)
  t.ok(Array.isArray(dashboard.panels) && dashboard.panels.length > 0, 'it has panels')
  t.ok(dashboard.__inputs?.some((i: any) => i.name === 'DS_PROMETHEUS' && i.type === 'datasource' && i.pluginId === 'prometheus'), `a ${DS_UID} datasource input`)
  const prefix = dashboard.templating?.list?.find((v: any) => v.name === 'prefix')
  if (prefix !== undefined) t.equal(prefix.query, PREFIX, 'the prefix variable defaults to the plugin\'s default prefix')
})

t.test('every panel has a title, a datasource and targets; ids are unique', async (t) => {
  const panels = allPanels(dashboard.panels)
  const ids = panels.map((p: any) => p.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  for (const p of panels.filter((p: any) => p.type !== 'row')) {
    const name = `panel ${p.id} (${p.title})`
    t.ok(typeof p.title === 'string' && p.title.trim() !== '', `${name}: has a title`)
    t.same(p.datasource, { type: 'prometheus', uid: DS_UID }, `${name}: the Prometheus input as datasource`)
    t.ok(Array.isArray(p.targets) && p.targets.length > 0, `${name}: at least one target`)
    for (const target of p.targets ?? []) {
      t.ok(typeof target.expr === 'string' && target.expr.trim() !== '', `${name} ${target.refId}: an expression`)
      t.ok(target.datasource === undefined || target.datasource.uid === DS_UID, `${name} ${target.refId}: the same datasource`)
    }
    t.ok(p.gridPos && p.gridPos.w > 0 && p.gridPos.h > 0 && p.gridPos.x + p.gridPos.w <= 24, `${name}: fits the 24-column grid`)
  }
})

t.test('the expressions name only the plugin\'s metrics, and every metric is shown', async (t) => {
  const used = new Set<string>()
  for (const p of allPanels(dashboard.panels)) {
    for (const target of p.targets ?? []) {
      const names = metricNames(target.expr)
      t.ok(names.length > 0, `${p.title} ${target.refId}: selects a metric`)
      for (const name of names) {
        t.ok(name.startsWith(PREFIX) && METRICS.includes(baseName(name)), `${p.title} ${target.refId}: ${name} is one of the plugin's metrics`)
        if (/_(bucket|sum|count)$/.test(name)) t.equal(baseName(name), 'store_operation_seconds', `${name}: only the histogram has _bucket/_sum/_count series`)
        used.add(baseName(name))
      }
      // Counters and histogram buckets only make sense as rates.
      for (const m of target.expr.replaceAll(PREFIX_VAR, PREFIX).matchAll(/(\w+_(?:total|bucket|sum|count))(\{[^}]*\})?(\s*\[)?/g)) {
        t.ok(m[3] !== undefined, `${p.title} ${target.refId}: ${m[1]} is read over a range (rate)`)
      }
    }
  }
  for (const m of METRICS) t.ok(used.has(m), `${PREFIX}${m} is used by some panel`)
})

t.test('the panels the dashboard promises', async (t) => {
  const panels = allPanels(dashboard.panels)
  const find = (title: RegExp) => panels.find((p: any) => title.test(p.title))
  const exprs = (p: any) => (p?.targets ?? []).map((x: any) => x.expr as string).join('\n')

  const ratio = find(/hit ratio per route/i)
  t.ok(ratio, 'a hit ratio per route panel')
  t.match(exprs(ratio), /by \(route\)/, 'per route')
  t.match(exprs(ratio), /outcome="hit"/, 'hits over ...')
  const denominator = exprs(ratio).split('/').slice(1).join('/')
  for (const o of OUTCOMES) t.match(denominator, new RegExp(`outcome=~"[^"]*\\b${o}\\b`), `... all requests, ${o} included`)
  t.match(exprs(ratio), /rate\([^)]*requests_total[^)]*\[5m\]\)/, 'from rate(requests_total[5m])')

  t.match(exprs(find(/requests per second by outcome/i)), /sum by \(outcome\) \(rate\(/, 'requests per second by outcome')
  const latency = exprs(find(/latency p50 \/ p99 per backend/i))
  t.match(latency, /histogram_quantile\(0\.5, sum by \(le, backend\) \(rate\(\$\{prefix\}store_operation_seconds_bucket/, 'p50 per backend')
  t.match(latency, /histogram_quantile\(0\.99, sum by \(le, backend\) \(rate\(\$\{prefix\}store_operation_seconds_bucket/, 'p99 per backend')
  t.match(exprs(find(/store errors per second/i)), /rate\(\$\{prefix\}store_errors_total/, 'store errors per second')
  t.match(exprs(find(/breaker open/i)), /by \(backend\) \(\$\{prefix\}breaker_open/, 'breaker open per backend')
  t.match(exprs(find(/fallback active/i)), /by \(backend\) \(\$\{prefix\}fallback_active/, 'fallback active per backend')
  t.match(exprs(find(/invalidations per second by kind/i)), /sum by \(kind\) \(rate\(\$\{prefix\}invalidations_total/, 'invalidations by kind')
  t.match(exprs(find(/memory store bytes/i)), /memory_store_bytes/, 'memory store bytes')
  t.match(exprs(find(/memory store entries/i)), /memory_store_entries/, 'memory store entries')
})

t.test('the PromQL name parser', async (t) => {
  t.same(metricNames(`sum by (route) (rate(${PREFIX_VAR}requests_total{outcome="hit", route=~"$route"}[5m]))`), ['fastify_cache_requests_total'])
  t.same(metricNames('histogram_quantile(0.99, sum by (le, backend) (rate(x_bucket{a="b(c)"}[5m])))'), ['x_bucket'])
  t.same(metricNames('max by (backend) (up) > bool 0 or on(instance) vector(0)'), ['up'])
  t.same(metricNames('a / b'), ['a', 'b'])
})

function allPanels (panels: any[]): any[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])])
}
