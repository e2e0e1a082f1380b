// The summary a soak prints, one `name  value` line each, so that people and tests can read it.

export function summarize ({ options, stats, violations, faults, crashes }) {
  const { requests, cache, latencies } = stats
  const total = requests.item + requests.list + requests.patch
  const hits = cache.HIT ?? 0
  const misses = cache.MISS ?? 0
  const sorted = Float64Array.from(latencies).sort()
  const at = (q) => sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
  const ms = (value) => value.toFixed(1)
  const failures = [
    violations.total > 0 && `${violations.total} violation(s)`,
    stats.serverErrors > 0 && `${stats.serverErrors} 5xx`,
    stats.errors > 0 && `${stats.errors} failed request(s)`,
    crashes.length > 0 && `${crashes.length} process(es) exited during the run`,
  ].filter(Boolean)

  const lines = [
    `soak: ${options.backend}, ${options.instances} instance(s), ${options.connections} connection(s), ${ms(stats.elapsedMs / 1000)} s, ` +
      `GET delay 0-${options.delay} ms, lease ${options.lease ? 'on' : 'off'}, seed ${options.seed}`,
    `requests      ${total} (GET item ${requests.item}, GET list ${requests.list}, PATCH ${requests.patch}), ${Math.round(total / (stats.elapsedMs / 1000))}/s`,
    `hit ratio     ${hits + misses === 0 ? 'n/a' : (hits / (hits + misses)).toFixed(3)}`,
    `x-cache       ${Object.entries(cache).sort().map(([value, n]) => `${value} ${n}`).join(', ') || 'none'}`,
    `violations    ${violations.total} (same-instance ${violations.sameInstance}, cross-instance ${violations.crossInstance})`,
    `5xx           ${stats.serverErrors}`,
    `errors        ${stats.errors}`,
    `latency ms    p50 ${ms(at(0.5))}, p99 ${ms(at(0.99))}, max ${ms(sorted.at(-1) ?? 0)}`,
  ]
  if (options.pause || options.kill) lines.push(`faults        pause ${faults.pause}, kill ${faults.kill}`)
  for (const example of violations.examples) lines.push(`  stale: ${example}`)
  for (const example of stats.examples) lines.push(`  failed: ${example}`)
  for (const crash of crashes) lines.push(`  exited: ${crash}`)
  lines.push(`result        ${failures.length === 0 ? 'ok' : `FAIL: ${failures.join(', ')}`}`)
  return { text: lines.join('\n'), ok: failures.length === 0 }
}
