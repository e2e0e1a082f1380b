// The report: written as JSON, printed as a markdown table, and the number formats both use.

import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

export function writeReport (report, file) {
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n')
}

export function table (report) {
  const lines = [
    '| variant | req/s (median) | spread | p99 ms | × raw | × baseline | target | × ceiling | store reads / req | server µs / req | store µs / req | handler calls | other load | checks |',
    '| --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |',
  ]
  for (const r of report.results) {
    const vsBase = r.baseline === undefined || r.baseline === 'raw' ? '' : `${r.ratio.toFixed(2)} (${r.baseline})`
    const target = r.target === undefined ? '' : `≥ ${r.target.toFixed(2)}${r.baseline === 'raw' ? '' : ` × ${r.baseline}`}: ${r.met ? 'met' : '**missed**'}`
    lines.push(`| ${r.name} | ${fmt(r.rps)} | ${(r.spread * 100).toFixed(1)}% | ${ms(r.p99)} | ${r.xRaw === undefined ? '' : r.xRaw.toFixed(2)} | ${vsBase} | ${target} | ${ceilingCell(r.ceiling)} | ${r.readsPerRequest === undefined ? '' : r.readsPerRequest.toFixed(r.readsPerRequest < 0.1 ? 4 : 2)} | ${us(r.cpuPerRequest)} | ${us(r.storeCpuPerRequest)} | ${fmt(r.handlerCalls)} | ${pct(Math.max(...r.noise))} | ${r.ok ? 'ok' : 'FAILED'} |`)
  }
  for (const f of report.footprints) {
    lines.push('', `Memory footprint (compression ${f.compression ? 'on, the default' : 'off'}): ${fmt(f.inserted)} responses of ${f.bodyBytes.join('-')} B cached into the memory store ` +
      `(maxBytes ${fmt(f.maxBytes)}, maxEntries ${fmt(f.maxEntries)}): ${fmt(f.entriesKept)} kept, the newest; ≈ ${fmt(f.storedBytes)} B accounted ` +
      `(${fmt(f.entryBytes)} B per entry) - ${f.withinBound ? 'within' : '**over**'} the bound; MemoryStore filled directly: peak ${fmt(f.direct.peakBytes ?? NaN)} B. ` +
      `RSS ${mb(f.rssBefore)} MB before, ${mb(f.rssAfter)} MB after (+${mb(f.rssAfter - f.rssBefore)} MB; heap +${mb(f.heapAfter - f.heapBefore)} MB, ` +
      `external (Buffers) +${mb(f.externalAfter - f.externalBefore)} MB); fill took ${fmt(f.fillMs / 1000, 1)} s.`)
  }
  const m = report.machine
  lines.push('', `${m.nproc} CPUs (${m.cpu}), Node ${m.node}, redis ${m.redis}, memcached ${m.memcached}${m.loadGenerator === undefined ? '' : `, ${m.loadGenerator}`}; load average ${m.loadavg} at start, ${m.loadavgEnd} at end; ` +
    `${report.config.rounds} rounds of ${loadGenerator(report.config)} -c ${report.config.connections} -d ${report.config.duration} (+${report.config.warmup} s warm-up) in ${report.seconds} s. ` +
    'req/s and p99: medians over all samples (baselines: 2 per round); × baseline (and × raw for the variants measured against raw): median over the rounds of ' +
    'the sample / the mean of the two baseline samples that bracket it in its round; × raw for other variants: ratio of medians; ' +
    '× ceiling: median over the rounds of (the variant\'s × baseline / its hand-written ceiling\'s × baseline, same round), with the issue\'s target; ' +
    'spread = (max - min) / median of the samples; store reads / req = GETs the Redis or Memcached server counted during the samples ' +
    '(INFO commandstats: GET and MGET calls, one MGET reading the keys of every lookup batched into one script call; memcached cmd_get, which counts namespace-version keys too) / requests served (warm-up included); ' +
    'server µs / req and store µs / req: CPU time the variant\'s server process and its store server used during the samples (warm-up included) / requests served; ' +
    '"CPU n×" in the × ceiling column: the variant\'s server + store CPU per request over its ceiling\'s; other load = the most CPU that processes outside this run used during one of the ' +
    `variant's samples, as a share of the machine (samples above ${pct(report.config.noiseLimit)} were retried up to ${report.config.retries} times, ` +
    `the quietest kept; ${report.results.reduce((a, r) => a + r.retries, 0)} retries in all).`)
  return lines.join('\n')
}

/** The table's "× ceiling" cell: ratio, which ceiling, target met or missed. */
function ceilingCell (c) {
  if (c === undefined) return ''
  const cpu = Number.isFinite(c.cpuRatio) ? `; CPU ${c.cpuRatio.toFixed(2)}×` : ''
  return `${c.ratio.toFixed(2)} (${c.name})${c.target === undefined ? '' : `, ≥ ${c.target.toFixed(2)}: ${c.met ? 'met' : '**missed**'}`}${cpu}`
}

/** µs per request (one decimal under 10). */
function us (value) {
  return value === undefined || !Number.isFinite(value) ? '' : value.toFixed(value < 10 ? 1 : 0)
}

/** 'autocannon' or 'wrk -t N' (reports written before --load existed: autocannon). */
export function loadGenerator (config) {
  return config.load === 'wrk' ? `wrk -t ${Math.min(config.wrkThreads, config.connections)}` : 'autocannon'
}

/** p99 in ms: autocannon reports whole ms, wrk fractions. */
function ms (value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 1)
}

export function pct (fraction) {
  return Number.isNaN(fraction) ? 'n/a' : `${(fraction * 100).toFixed(0)}%`
}

export function mb (bytes) {
  return fmt(bytes / 1048576, 1)
}

export function fmt (n, digits = 0) {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export function bullets (problems) {
  return problems.map((p) => `  ! ${p}`).join('\n')
}
