// The load generator, run by benchmarks/run.js as its own process (so that it never shares an
// event loop with the runner): an optional warm-up, then one measured autocannon run; prints
// one JSON line with the numbers the runner needs.
//
//   node benchmarks/load.js '{"url":"http://127.0.0.1:PORT","path":"/items/1","connections":50,
//                             "duration":5,"warmup":1,"paths":null}'
//
// `paths`: null for one fixed path; `{ "prefix": "/items/", "cycle": 10000 }` cycles ids
// 0..cycle-1 over all connections; `{ "prefix": "/slow/", "start": N }` counts up from N, so no
// id is ever requested twice (forced misses).

import autocannon from 'autocannon'

const opts = JSON.parse(process.argv[2])

function requestsFor (paths, offset) {
  if (paths === null || paths === undefined) return undefined
  let n = offset
  const next = paths.cycle !== undefined
    ? () => paths.prefix + (n++ % paths.cycle)
    : () => paths.prefix + (paths.start + n++)
  return [{
    method: 'GET',
    setupRequest (request) {
      request.path = next()
      return request
    },
  }]
}

function run (duration, offset) {
  return autocannon({
    url: opts.url + (opts.path ?? '/'),
    connections: opts.connections,
    duration,
    pipelining: 1,
    requests: requestsFor(opts.paths, offset),
  })
}

// Warm-up ids come from far above the measured ones (the runner gives every sample its own
// `start`, 10^8 apart), so forced misses stay unique across warm-ups, samples and rounds.
const warmup = opts.warmup > 0 ? await run(opts.warmup, 50_000_000) : undefined
const result = await run(opts.duration, 0)
process.stdout.write(JSON.stringify({
  rps: result.requests.average,
  requests: result.requests.total,
  // The runner counts store reads over warm-up and measurement together.
  warmupRequests: warmup?.requests.total ?? 0,
  latency: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
  non2xx: result.non2xx,
  errors: result.errors,
  timeouts: result.timeouts,
  duration: result.duration,
}) + '\n')
