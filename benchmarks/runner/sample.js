// Samples: one measured load-generator run (autocannon or wrk) against a variant's server, retried when the machine was busy.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { track } from './children.js'
import { BENCHMARKS, ROOT, config } from './config.js'
import { cpuSnapshot, foreignLoad } from './noise.js'
import { calls } from './servers.js'
import { storeCpu, storeReads } from './stores.js'

// Retries are allowed only while the samples still planned fit before this time (the full run
// should stay under ~10 minutes).
let retryDeadline = Infinity
let samplesLeft = 0
const sampleSeconds = () => config.warmup + config.duration + 0.8

export function planSamples (count, started) {
  samplesLeft = count
  // Retries may stretch the run to 9.5 minutes, or by a quarter of its planned length if more.
  retryDeadline = started + Math.max(570, 1.25 * (90 + samplesLeft * sampleSeconds())) * 1000
}

let sampleSerial = 0

/**
 * One measured sample (warm-up included) in its own load-generator process (benchmarks/load.js:
 * autocannon; benchmarks/load-wrk.js: wrk). A sample during which
 * foreign processes used more than `config.noiseLimit` of the machine is run again (up to
 * `config.retries` times, while the time budget lasts); the quietest attempt is kept.
 */
export async function sample (variant, server, round) {
  let best
  for (let attempt = 0; attempt <= config.retries; attempt++) {
    const s = await sampleOnce(variant, server, round)
    s.attempts = attempt + 1
    if (best === undefined || !(s.noise >= best.noise)) best = { ...s, attempts: attempt + 1 }
    if (!(s.noise > config.noiseLimit) || Date.now() + samplesLeft * sampleSeconds() * 1000 > retryDeadline) break
  }
  samplesLeft--
  return best
}

async function sampleOnce (variant, server, round) {
  const before = await calls(server.port)
  const readsBefore = server.store === undefined ? undefined : await storeReads(server.store)
  const storeCpuBefore = server.store === undefined ? undefined : await storeCpu(server.store)
  // Forced misses: ids from a range no other sample (or attempt, or warm-up) uses.
  const serial = ++sampleSerial
  const paths = variant.paths?.start !== undefined ? { ...variant.paths, start: serial * 100_000_000 } : variant.paths
  const spec = { url: `http://127.0.0.1:${server.port}`, path: variant.path ?? '/', connections: config.connections, duration: config.duration, warmup: config.warmup, paths }
  // wrk: the thread count, and what every warm-up response must carry (x-cache of the plugin
  // variants; status 200 for the others).
  if (config.load === 'wrk') Object.assign(spec, { threads: config.wrkThreads, check: variant.kind === 'hit' ? 'HIT' : variant.kind === 'miss' ? 'MISS' : 'status' })
  const script = config.load === 'wrk' ? 'load-wrk.js' : 'load.js'
  const cpuBefore = cpuSnapshot()
  const child = track(spawn(process.execPath, [join(BENCHMARKS, script), JSON.stringify(spec)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] }), `${config.load} ${variant.name}`)
  let out = ''
  child.stdout.on('data', (c) => { out += c })
  const [code] = await once(child, 'exit')
  const noise = foreignLoad(cpuBefore, cpuSnapshot())
  if (code !== 0) throw new Error(`${config.load} for ${variant.name} exited with ${code}`)
  const result = JSON.parse(out.trim().split('\n').pop())
  const after = await calls(server.port)
  const storeReadCount = server.store === undefined ? undefined : await storeReads(server.store) - readsBefore
  const storeCpuUs = server.store === undefined ? undefined : await storeCpu(server.store) - storeCpuBefore
  const d = (field) => (after.stats?.[field] ?? 0) - (before.stats?.[field] ?? 0)
  const s = {
    round,
    rps: result.requests / result.duration,
    p99: result.latency.p99,
    requests: result.requests,
    // Warm-up included: store reads are counted over both.
    served: result.requests + result.warmupRequests,
    storeReads: storeReadCount,
    // µs of CPU over the sample (warm-up included, like `served`): the server's own, and its
    // store server's. The two /__calls requests are in the server's share (a few µs).
    serverCpu: after.cpu - before.cpu,
    storeCpu: storeCpuUs,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    handlerCalls: after.calls - before.calls,
    hits: d('hits'),
    misses: d('misses'),
    sets: d('sets'),
    bypasses: d('bypasses'),
    storeErrors: d('errors'),
    rss: after.rss,
    noise,
    // wrk only: the warm-up's response checks (status, x-cache).
    responseChecks: result.checks,
  }
  s.problems = checkSample(variant, s)
  return s
}

function checkSample (variant, s) {
  const problems = []
  const where = `${variant.name} round ${s.round + 1}`
  if (s.requests === 0) problems.push(`${where}: no requests completed`)
  if (s.errors > 0 || s.non2xx > 0) problems.push(`${where}: ${s.errors} errors, ${s.non2xx} non-2xx`)
  const rc = s.responseChecks
  if (rc !== undefined && (rc.badStatus > 0 || rc.badCache > 0)) {
    problems.push(`${where}: warm-up responses: ${rc.badStatus} not status 200, ${rc.badCache} without x-cache ${rc.expected} (of ${rc.checked}; last: ${rc.lastBad})`)
  }
  if (s.bypasses > 0 || s.storeErrors > 0) problems.push(`${where}: ${s.bypasses} bypasses, ${s.storeErrors} store errors`)
  if (variant.kind === 'hit' || variant.kind === 'ceiling') {
    // Warm-up requests are in the server's counts, not in autocannon's: counts >= requests.
    if (s.handlerCalls > 0) problems.push(`${where}: the handler ran ${s.handlerCalls} times under load (expected 0: every request a hit)`)
    if (variant.kind === 'hit' && (s.hits < s.requests || s.misses > 0)) problems.push(`${where}: ${s.hits} hits, ${s.misses} misses for ${s.requests} requests`)
  }
  if (variant.kind === 'miss' && (s.hits > 0 || s.misses < s.requests || s.handlerCalls < s.requests)) {
    problems.push(`${where}: ${s.hits} hits, ${s.misses} misses, ${s.handlerCalls} handler calls for ${s.requests} requests (expected every request a miss)`)
  }
  if ((variant.kind === 'origin' || variant.kind === 'ceiling-miss') && s.handlerCalls < s.requests) problems.push(`${where}: ${s.handlerCalls} handler calls for ${s.requests} requests`)
  return problems
}
