#!/usr/bin/env node
// A bounded, mixed load against a running demo (demo/server.js): mostly cached GETs, now and then
// a mutation that invalidates some of them, and a few requests the demo refuses (400). Made to
// give the cache's metrics and the demo's logs something to show, not to measure throughput.
//
//   node scripts/demo-load.js [baseUrl] [--duration S] [--max N] [--concurrency C] [--rps R] [--seed N]
//
//   baseUrl        default $DEMO_URL or http://127.0.0.1:3000
//   --duration S   stop after S seconds (default $LOAD_DURATION or 60; at most 3600)
//   --max N        stop after N requests (default $LOAD_MAX_REQUESTS or 20000)
//   --concurrency  requests in flight (default $LOAD_CONCURRENCY or 4; at most 64)
//   --rps R        at most R requests per second in all (default $LOAD_RPS or 150; 0: no limit)
//   --seed N       the request mix's random seed (default: from the clock)
//
// Every 10 s it prints one line: requests in that interval, status codes, x-cache values
// ("-" where the response had none); at the end the totals. Exit status 1 when the demo cannot
// be reached or when requests failed (network errors, timeouts, 5xx).
//
// The mix (weights): GET /widgets/:id 40, GET /users/:id/widgets?page=N 16, GET /countries/:code
// 14, GET /users/:id 12, GET /countries 8, PATCH /widgets/:id {"color"} 4, POST /widgets 1.5,
// DELETE /widgets/:id 1 (only widgets this run created; the demo's six stay), invalid 2.5
// (/widgets/abc, /widgets/007, /countries/fr: refused by the demo's schemas with a 400 before
// the cache takes part, so they carry no x-cache header). Ids are skewed towards small ones, as
// real traffic is, so most GETs hit.

import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    duration: { type: 'string' },
    max: { type: 'string' },
    concurrency: { type: 'string' },
    rps: { type: 'string' },
    seed: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (opts.help) {
  console.log('usage: node scripts/demo-load.js [baseUrl] [--duration S] [--max N] [--concurrency C] [--rps R] [--seed N]')
  process.exit(0)
}

const base = new URL(positionals[0] ?? process.env.DEMO_URL ?? 'http://127.0.0.1:3000')
const durationS = num('duration', opts.duration ?? process.env.LOAD_DURATION, 60, 0.1, 3600)
const maxRequests = num('max', opts.max ?? process.env.LOAD_MAX_REQUESTS, 20000, 1, 10_000_000)
const concurrency = num('concurrency', opts.concurrency ?? process.env.LOAD_CONCURRENCY, 4, 1, 64)
const rps = num('rps', opts.rps ?? process.env.LOAD_RPS, 150, 0, 100_000)
const seed = num('seed', opts.seed, Date.now() % 2 ** 31, 0, 2 ** 31)
const REQUEST_TIMEOUT_MS = 5000
const REPORT_EVERY_MS = 10_000

// Seeded, so that a run's mix can be repeated (mulberry32).
let state = seed >>> 0
function random () {
  state = (state + 0x6d2b79f5) >>> 0
  let x = state
  x = Math.imul(x ^ (x >>> 15), x | 1)
  x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
  return ((x ^ (x >>> 14)) >>> 0) / 4294967296
}
const pick = (list) => list[Math.floor(random() * list.length)]
/** 1..n, small ones much more often (a power-law-ish skew). */
const skewed = (n) => 1 + Math.floor(n * random() ** 2.5)

const USERS = [1, 2]
const SEED_WIDGETS = 6
const COUNTRIES = ['BR', 'DE', 'FR', 'IN', 'JP', 'KE', 'US']
const COLORS = ['red', 'blue', 'green', 'yellow', 'black', 'white', 'purple', 'orange', 'teal']
const NAMES = ['Sprocket', 'Gizmo', 'Doohickey', 'Widget', 'Gadget', 'Contraption']
const created = [] // widget ids this run created and has not deleted yet

const json = { 'content-type': 'application/json' }
const MIX = [
  [40, () => ({ method: 'GET', path: `/widgets/${random() < 0.1 && created.length > 0 ? pick(created) : skewed(SEED_WIDGETS)}` })],
  [16, () => ({ method: 'GET', path: `/users/${pick(USERS)}/widgets?page=${skewed(3)}` })],
  [14, () => ({ method: 'GET', path: `/countries/${random() < 0.05 ? 'ZZ' : COUNTRIES[skewed(COUNTRIES.length) - 1]}` })],
  [12, () => ({ method: 'GET', path: `/users/${pick(USERS)}` })],
  [8, () => ({ method: 'GET', path: '/countries' })],
  [4, () => ({ method: 'PATCH', path: `/widgets/${skewed(SEED_WIDGETS)}`, headers: json, body: JSON.stringify({ color: pick(COLORS) }) })],
  [1.5, () => ({ method: 'POST', path: '/widgets', headers: json, body: JSON.stringify({ ownerId: pick(USERS), name: pick(NAMES), color: pick(COLORS) }), created: true })],
  [1, () => created.length > 0
    ? { method: 'DELETE', path: `/widgets/${created.splice(Math.floor(random() * created.length), 1)[0]}` }
    : { method: 'GET', path: `/widgets/${skewed(SEED_WIDGETS)}` }],
  [2.5, () => ({ method: 'GET', path: pick(['/widgets/abc', '/widgets/007', '/countries/fr']) })],
]
const TOTAL_WEIGHT = MIX.reduce((a, [w]) => a + w, 0)
function nextRequest () {
  let r = random() * TOTAL_WEIGHT
  for (const [w, make] of MIX) {
    if ((r -= w) < 0) return make()
  }
  return MIX[0][1]()
}

function newCounts () {
  return { requests: 0, failed: 0, status: new Map(), cache: new Map(), methods: new Map() }
}
const inc = (map, key) => map.set(key, (map.get(key) ?? 0) + 1)
const total = newCounts()
let interval = newCounts()

async function send (req) {
  const res = await fetch(new URL(req.path, base), {
    method: req.method,
    headers: req.headers,
    body: req.body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  })
  const text = await res.text()
  return { status: res.status, cache: res.headers.get('x-cache'), text }
}

function record (req, result) {
  for (const c of [total, interval]) {
    c.requests++
    inc(c.methods, req.method)
    if (result === undefined) {
      c.failed++
      inc(c.status, 'error')
    } else {
      inc(c.status, String(result.status))
      inc(c.cache, result.cache ?? '-')
      if (result.status >= 500) c.failed++
    }
  }
}

const fmtMap = (map) => [...map].sort(([a], [b]) => String(a).localeCompare(String(b))).map(([k, v]) => `${k}:${v}`).join(' ') || '-'
function line (label, c, seconds) {
  return `${label} ${c.requests} req (${(c.requests / seconds).toFixed(1)}/s) | status ${fmtMap(c.status)} | x-cache ${fmtMap(c.cache)} | ${fmtMap(c.methods)}${c.failed > 0 ? ` | FAILED ${c.failed}` : ''}`
}

async function main () {
  // Preflight: is a demo there at all?
  try {
    const r = await send({ method: 'GET', path: '/countries' })
    if (r.status !== 200) throw new Error(`GET /countries answered ${r.status}`)
  } catch (err) {
    console.error(`demo-load: no demo at ${base.href} (${err.cause?.code ?? err.message}); start one with: PORT=3000 node demo/server.js`)
    process.exitCode = 1
    return
  }
  console.log(`demo-load: ${base.origin}, ${durationS} s or ${maxRequests} requests, ${concurrency} in flight, ${rps === 0 ? 'no rate limit' : `at most ${rps} req/s`}, seed ${seed}`)

  const started = Date.now()
  const deadline = started + durationS * 1000
  let issued = 0
  let stopping = false
  const stop = () => { stopping = true }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)

  let lastReport = started
  const reporter = setInterval(() => {
    const now = Date.now()
    console.log(line(`[${String(Math.round((now - started) / 1000)).padStart(4)} s]`, interval, (now - lastReport) / 1000))
    interval = newCounts()
    lastReport = now
  }, REPORT_EVERY_MS)

  // (A function, not a loop condition: `stopping` changes in a signal handler.)
  const going = () => !stopping && issued < maxRequests && Date.now() < deadline
  async function worker () {
    while (going()) {
      const n = issued++
      if (rps > 0) {
        const due = started + (n * 1000) / rps
        const wait = due - Date.now()
        if (wait > 0) await sleep(Math.min(wait, deadline - Date.now()))
        if (stopping || Date.now() >= deadline) break
      }
      const req = nextRequest()
      let result
      try {
        result = await send(req)
        if (req.created && result.status === 201) created.push(JSON.parse(result.text).id)
      } catch {
        result = undefined
      }
      record(req, result)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  clearInterval(reporter)
  process.removeListener('SIGINT', stop)
  process.removeListener('SIGTERM', stop)
  const seconds = (Date.now() - started) / 1000
  if (interval.requests > 0 && lastReport !== started) console.log(line(`[${String(Math.round(seconds)).padStart(4)} s]`, interval, (Date.now() - lastReport) / 1000))
  console.log(line(`total in ${seconds.toFixed(1)} s:`, total, seconds))
  if (total.failed > 0) process.exitCode = 1
}

function num (name, value, fallback, min, max) {
  const n = value === undefined ? fallback : Number(value)
  if (!Number.isFinite(n) || n < min || n > max) {
    console.error(`demo-load: --${name}: expected a number in ${min}..${max}, got '${value}'`)
    process.exit(2)
  }
  return n
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
