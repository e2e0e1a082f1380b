#!/usr/bin/env node
// The benchmark suite: `npm run bench` (full, ~8 minutes) or `npm run bench -- --quick` (~2.3 minutes).
// See benchmarks/README.md for the method. Every process it starts (redis-server, memcached, one
// server per variant, one autocannon process per sample) is loopback-only and ended before it
// exits, also on errors and Ctrl-C.
//
// Options:
//   --quick               3 short rounds (1 s samples, 0.5 s warm-up), no ceiling variants,
//                         one footprint run
//   --rounds N            rounds of interleaved samples (default 3)
//   --duration S          seconds measured per sample (default 5; quick 1)
//   --warmup S            seconds of load before each sample, not measured (default 1; quick 0.5)
//   --connections N       autocannon connections (default 50)
//   --only a,b,...        run only these variants (their baselines are added); `footprint` is one
//   --no-ceilings         leave out the ceiling variants (onRequest + Map/ioredis/memjs, string)
//   --no-footprint        skip the memory-footprint run
//   --no-build            do not run `npm run build` first (dist/ must exist)
//   --no-compression      plugin variants with compression disabled (diagnostic)
//   --profile a,b         profile these variants' servers with `node --cpu-prof` (one sample each)
//                         and print the top self-time functions; no table
//   --retries N           run a sample again (up to N times) when other processes used more than
//                         --noise-limit of the machine's CPU during it (default 2; quick 0)
//   --noise-limit F       that share, 0..1 (default 0.1)
//   --json FILE           where to write the results (default benchmarks/results/latest.json)
//   --help                this text

import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual, parseArgs } from 'node:util'
import { PAYLOAD_BYTES, payload } from './payload.js'
import { summarizeProfile } from './profile.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = dirname(HERE)
const MANY_KEYS = 10_000
const RESERVED_PORTS = new Set([6379, 11211])

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    only: { type: 'string' },
    'no-ceilings': { type: 'boolean', default: false },
    'no-footprint': { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    'no-compression': { type: 'boolean', default: false },
    profile: { type: 'string' },
    json: { type: 'string' },
    'noise-limit': { type: 'string' },
    retries: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (args.help) {
  // The comment block at the top of this file is the help text.
  const text = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1)
  console.log(text.slice(0, text.findIndex((l) => !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'))
  process.exit(0)
}

const config = {
  rounds: int(args.rounds, 3, 1, 20),
  duration: num(args.duration, args.quick ? 1 : 5, 1, 60),
  warmup: num(args.warmup, args.quick ? 0.5 : 1, 0, 30),
  connections: int(args.connections, 50, 1, 500),
  compression: !args['no-compression'],
  // A sample during which other processes used more than this share of the machine is retried.
  noiseLimit: num(args['noise-limit'], 0.1, 0, 1),
  retries: int(args.retries, args.quick ? 0 : 2, 0, 10),
}
// Retries are allowed only while the samples still planned fit before this time (the full run
// should stay under ~10 minutes).
let retryDeadline = Infinity
let samplesLeft = 0
const sampleSeconds = () => config.warmup + config.duration + 0.8

// ---------------------------------------------------------------------------------------------
// Variants. kind: origin (handler runs every time), hit (must never run the handler while
// measured), miss (must miss every time), ceiling (hand-written lower bounds of a hit's work).

const one = null
const many = { prefix: '/items/', cycle: MANY_KEYS }
const unique = { prefix: '/slow/', start: 0 }

const VARIANTS = [
  { name: 'raw', script: 'raw.js', path: '/items/1', kind: 'origin', what: 'plain Fastify route, JSON object serialized per request' },
  { name: 'plugin-uncached', script: 'plugin-uncached.js', path: '/items/1', kind: 'origin', baseline: 'raw', target: 0.98, what: 'plugin registered, route without config.cache' },
  { name: 'memory-hit', script: 'memory-hit.js', path: '/items/1', kind: 'hit', baseline: 'raw', target: 1.4, what: 'memory store, one hot key' },
  { name: 'redis-hit', script: 'redis-hit.js', path: '/items/1', kind: 'hit', needs: 'redis', baseline: 'raw', target: 0.83, what: 'Redis store, one hot key' },
  { name: 'memcached-hit', script: 'memcached-hit.js', path: '/items/1', kind: 'hit', needs: 'memcached', baseline: 'raw', target: 0.70, what: 'Memcached store, one hot key' },
  { name: 'raw-many', script: 'raw.js', paths: many, kind: 'origin', what: `plain route, ids cycling 0..${MANY_KEYS - 1}` },
  { name: 'memory-many', script: 'memory-hit.js', paths: many, kind: 'hit', prewarm: MANY_KEYS, baseline: 'raw-many', what: `memory store, ${MANY_KEYS} keys cycling, pre-warmed` },
  { name: 'redis-many', script: 'redis-hit.js', paths: many, kind: 'hit', needs: 'redis', prewarm: MANY_KEYS, baseline: 'raw-many', what: `Redis store, ${MANY_KEYS} keys cycling, pre-warmed` },
  { name: 'memcached-many', script: 'memcached-hit.js', paths: many, kind: 'hit', needs: 'memcached', prewarm: MANY_KEYS, baseline: 'raw-many', what: `Memcached store, ${MANY_KEYS} keys cycling, pre-warmed` },
  { name: 'slow-uncached', script: 'slow-uncached.js', paths: unique, kind: 'origin', what: '20 ms origin, no plugin, a new id per request' },
  { name: 'memory-miss', script: 'slow-miss.js', env: { STORE: 'memory' }, paths: unique, kind: 'miss', baseline: 'slow-uncached', target: 0.95, what: '20 ms origin, memory store, a new id per request (always a miss)' },
  { name: 'redis-miss', script: 'slow-miss.js', env: { STORE: 'redis' }, paths: unique, kind: 'miss', needs: 'redis', baseline: 'slow-uncached', target: 0.95, what: '20 ms origin, Redis store, always a miss' },
  { name: 'memcached-miss', script: 'slow-miss.js', env: { STORE: 'memcached' }, paths: unique, kind: 'miss', needs: 'memcached', baseline: 'slow-uncached', target: 0.95, what: '20 ms origin, Memcached store, always a miss' },
  { name: 'ceil-string', script: 'raw-string.js', path: '/items/1', kind: 'ceiling', baseline: 'raw', what: 'ceiling: route sending a pre-serialized string' },
  { name: 'ceil-map', script: 'onrequest-map.js', path: '/items/1', kind: 'ceiling', baseline: 'raw', what: 'ceiling: onRequest hook replying from a Map' },
  { name: 'ceil-ioredis', script: 'onrequest-ioredis.js', path: '/items/1', kind: 'ceiling', needs: 'redis', baseline: 'raw', what: 'ceiling: onRequest hook, one ioredis GET' },
  { name: 'ceil-memjs', script: 'onrequest-memjs.js', path: '/items/1', kind: 'ceiling', needs: 'memcached', baseline: 'raw', what: 'ceiling: onRequest hook, one memjs get' },
  { name: 'ceil-ioredis-shared', script: 'onrequest-ioredis.js', env: { SHARED_READS: '1' }, path: '/items/1', kind: 'ceiling', needs: 'redis', baseline: 'raw', what: 'stretch: ioredis GET shared by concurrent lookups of a key' },
  { name: 'ceil-memjs-shared', script: 'onrequest-memjs.js', env: { SHARED_READS: '1' }, path: '/items/1', kind: 'ceiling', needs: 'memcached', baseline: 'raw', what: 'stretch: memjs get shared by concurrent lookups of a key' },
]
for (const v of VARIANTS) v.paths ??= one

// ---------------------------------------------------------------------------------------------
// Child processes: every one is tracked and ended on the way out, whatever the way out is.

const children = new Set()

function track (child, label) {
  child.label = label
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

async function stop (child, signal = 'SIGTERM', ms = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  if (child.guarded) child.stdin.end()
  else child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), ms)
  await exited
  clearTimeout(timer)
}

process.on('exit', () => {
  // Guarded store servers go with their pipe, which closes with this process.
  for (const child of children) if (!child.guarded) child.kill('SIGKILL')
})
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping ${children.size} child process(es)`)
    process.exit(130)
  })
}

// ---------------------------------------------------------------------------------------------
// Helpers

function int (value, fallback, min, max) {
  const n = value === undefined ? fallback : Number(value)
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`expected an integer in ${min}..${max}, got ${value}`)
  return n
}

function num (value, fallback, min, max) {
  const n = value === undefined ? fallback : Number(value)
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`expected a number in ${min}..${max}, got ${value}`)
  return n
}

async function freePort () {
  for (let attempt = 0; attempt < 20; attempt++) {
    const server = net.createServer()
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address()
    server.close()
    await once(server, 'close')
    if (!RESERVED_PORTS.has(port)) return port
  }
  throw new Error('no free port found')
}

/** Send `command` to 127.0.0.1:port until the reply contains `expect` (bounded). */
async function waitForTcp (port, command, expect, ms = 10_000) {
  const deadline = Date.now() + ms
  let lastError
  while (Date.now() < deadline) {
    try {
      const reply = await new Promise((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1')
        let data = ''
        socket.setTimeout(1000, () => socket.destroy(new Error('timeout')))
        socket.on('connect', () => socket.write(command))
        socket.on('data', (chunk) => {
          data += chunk
          if (data.includes('\n')) {
            socket.end()
            resolve(data)
          }
        })
        socket.on('error', reject)
      })
      if (reply.includes(expect)) return
      lastError = new Error(`unexpected reply ${JSON.stringify(reply)}`)
    } catch (err) {
      lastError = err
    }
    await sleep(100)
  }
  throw new Error(`127.0.0.1:${port} did not answer ${JSON.stringify(command.trim())}: ${lastError?.message}`)
}

function versionOf (command, args, pattern) {
  const out = spawnSync(command, args, { encoding: 'utf8' })
  return pattern.exec(`${out.stdout}${out.stderr}`)?.[1] ?? 'unknown'
}

/**
 * A store server that lives exactly as long as a pipe from this process: however the runner
 * ends (error, Ctrl-C, even SIGKILL), the pipe closes, `cat` returns and the server is killed.
 */
function spawnGuarded (command, args, label) {
  const probe = spawnSync(command, ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined) throw new Error(`${command} not found (${probe.error.code}): install it (Debian: apt-get install ${label})`)
  const script = '"$0" "$@" & pid=$!; cat > /dev/null; kill $pid 2> /dev/null; wait $pid'
  const child = track(spawn('sh', ['-c', script, command, ...args], { stdio: ['pipe', 'ignore', 'inherit'] }), label)
  child.guarded = true
  return child
}

async function startRedis (dir) {
  const port = await freePort()
  const child = spawnGuarded('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning',
  ], 'redis-server')
  await waitForTcp(port, 'PING\r\n', '+PONG')
  return { child, port, url: `redis://127.0.0.1:${port}` }
}

async function startMemcached () {
  const port = await freePort()
  const root = typeof process.getuid === 'function' && process.getuid() === 0
  const child = spawnGuarded('memcached', [
    '-p', String(port), '-l', '127.0.0.1', '-U', '0', '-m', '256', '-c', '1024',
    ...(root ? ['-u', 'root'] : []),
  ], 'memcached')
  await waitForTcp(port, 'version\r\n', 'VERSION')
  return { child, port, servers: `127.0.0.1:${port}` }
}

/**
 * The built package must be complete before a process imports it: other work on this machine
 * (`npm test`, `npm run build`) may be rebuilding dist/ at that moment (it starts with rm -rf).
 */
async function waitForDist (ms = 120_000) {
  const files = ['dist/esm/index.js', 'dist/esm/package.json', 'dist/esm/lib/route-cache.js', 'dist/esm/lib/stores/create.js']
  const deadline = Date.now() + ms
  while (!files.every((f) => existsSync(join(ROOT, f)))) {
    if (Date.now() > deadline) throw new Error('dist/ is incomplete: run `npm run build`')
    await sleep(500)
  }
}

/** Runs `start` again (up to 3 times) when it failed because dist/ was being rebuilt. */
async function withDistRetry (start) {
  for (let attempt = 1; ; attempt++) {
    await waitForDist()
    try {
      return await start()
    } catch (err) {
      if (attempt >= 3 || !/ERR_MODULE_NOT_FOUND|Cannot find module/.test(err.message)) throw err
      console.log(`  (dist/ was being rebuilt; retrying: ${err.message.split('\n')[0]})`)
      await sleep(2000)
    }
  }
}

/** One variant's server: a separate Node process on a free port (it reports the port). */
function startServer (variant, env, profileDir) {
  return withDistRetry(() => spawnServer(variant, env, profileDir))
}

async function spawnServer (variant, env, profileDir) {
  const nodeArgs = profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir]
  const child = track(spawn(process.execPath, [...nodeArgs, join(HERE, 'servers', variant.script)], {
    cwd: ROOT,
    env: { ...process.env, ...env, KEY_PREFIX: `bench-${variant.name}-${process.pid}`, ...(config.compression ? {} : { BENCH_COMPRESSION: '0' }), ...variant.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  }), variant.name)
  let stderr = ''
  child.stderr.on('data', (chunk) => { stderr = (stderr + chunk).slice(-4000) })
  const ready = new Promise((resolve, reject) => {
    let out = ''
    const onData = (chunk) => {
      out += chunk
      const line = out.split('\n').find((l) => l.startsWith('{'))
      if (line === undefined) return
      child.stdout.off('data', onData)
      try {
        resolve(JSON.parse(line))
      } catch (err) {
        reject(err)
      }
    }
    child.stdout.on('data', onData)
    child.once('exit', (code, signal) => reject(new Error(`server ${variant.name} exited (${code ?? signal}) before it was ready:\n${stderr}`)))
  })
  const timeout = sleep(30_000).then(() => { throw new Error(`server ${variant.name} not ready within 30 s:\n${stderr}`) })
  const { port } = await Promise.race([ready, timeout])
  child.stdout.resume()
  return { child, port, stderr: () => stderr }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 })

function get (port, path) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, timeout: 10_000 }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timeout`)))
    req.on('error', reject)
  })
}

async function calls (port) {
  const res = await get(port, '/__calls')
  if (res.status !== 200) throw new Error(`/__calls answered ${res.status}`)
  return JSON.parse(res.body)
}

/** The body must be payload(id), as JSON, whatever the variant. */
function checkBody (res, id, where) {
  const problems = []
  if (res.status !== 200) problems.push(`${where}: status ${res.status}`)
  if (!String(res.headers['content-type']).startsWith('application/json')) problems.push(`${where}: content-type ${res.headers['content-type']}`)
  let body
  try {
    body = JSON.parse(res.body)
  } catch {
    problems.push(`${where}: body is not JSON: ${res.body.slice(0, 80)}`)
  }
  if (body !== undefined && !isDeepStrictEqual(body, payload(id))) problems.push(`${where}: body differs from payload(${id})`)
  return problems
}

/** Requests `ids` with bounded concurrency (the many-keys pre-warm). */
async function requestAll (port, prefix, ids, concurrency = 16) {
  let next = 0
  const problems = []
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < ids.length) {
      const id = ids[next++]
      const res = await get(port, prefix + id)
      if (res.status !== 200 && problems.length < 5) problems.push(`${prefix}${id}: status ${res.status}`)
    }
  }))
  return problems
}

/** Before any load: bodies, x-cache, handler counts, pre-warm. Returns problems found. */
async function verify (variant, server) {
  const { port } = server
  const problems = []
  const plugin = variant.kind === 'hit' || variant.kind === 'miss'
  if (variant.kind === 'miss') {
    // Ids below 10^8: the load never requests them (every sample's ids start at n * 10^8).
    for (const id of [7, 8]) {
      const res = await get(port, `/slow/${id}`)
      problems.push(...checkBody(res, id, `${variant.name} /slow/${id}`))
      if (res.headers['x-cache'] !== 'MISS') problems.push(`${variant.name}: x-cache ${res.headers['x-cache']} on a new id, expected MISS`)
    }
  } else if (variant.paths?.start !== undefined) {
    const res = await get(port, '/slow/7')
    problems.push(...checkBody(res, 7, `${variant.name} /slow/7`))
  } else {
    const first = await get(port, '/items/1')
    const second = await get(port, '/items/1')
    problems.push(...checkBody(first, 1, `${variant.name} /items/1 (1st)`), ...checkBody(second, 1, `${variant.name} /items/1 (2nd)`))
    if (plugin && first.headers['x-cache'] !== 'MISS') problems.push(`${variant.name}: first x-cache ${first.headers['x-cache']}, expected MISS`)
    if (plugin && second.headers['x-cache'] !== 'HIT') problems.push(`${variant.name}: second x-cache ${second.headers['x-cache']}, expected HIT`)
    if (variant.prewarm !== undefined) {
      const ids = Array.from({ length: variant.prewarm }, (_, i) => i)
      problems.push(...await requestAll(port, '/items/', ids))
      for (const id of [0, 4321, variant.prewarm - 1]) {
        const res = await get(port, `/items/${id}`)
        problems.push(...checkBody(res, id, `${variant.name} /items/${id} after pre-warm`))
        if (res.headers['x-cache'] !== 'HIT') problems.push(`${variant.name}: /items/${id} x-cache ${res.headers['x-cache']} after pre-warm, expected HIT`)
      }
    }
    const counted = await calls(port)
    const expected = variant.prewarm ?? 1
    if ((variant.kind === 'hit' || variant.kind === 'ceiling') && counted.calls !== expected) {
      problems.push(`${variant.name}: handler ran ${counted.calls} times for ${expected} distinct key(s)`)
    }
  }
  if (plugin) {
    const { stats } = await calls(port)
    if (stats.errors > 0 || stats.bypasses > 0 || stats.fallbackActive) problems.push(`${variant.name}: store not healthy: ${JSON.stringify(stats)}`)
  }
  return problems
}

// ---------------------------------------------------------------------------------------------
// Noise: CPU time used on the machine by processes outside this run's process tree (other
// people's tests, say) during a sample, as a fraction of all CPUs; steal time counts as foreign.

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100

function cpuSnapshot () {
  if (!existsSync('/proc/stat')) return undefined
  try {
    const [, ...f] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).map(Number)
    // user nice system idle iowait irq softirq steal
    const busy = f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)
    const procs = new Map()
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
        const x = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
        // x[1] ppid; x[11..14] utime stime cutime cstime (reaped children land in cutime/cstime)
        procs.set(Number(pid), { ppid: Number(x[1]), cpu: Number(x[11]) + Number(x[12]) + Number(x[13]) + Number(x[14]) })
      } catch {}
    }
    let tree = 0
    for (const [pid, p] of procs) {
      let at = pid
      for (let depth = 0; at > 1 && depth < 64; depth++) {
        if (at === process.pid) {
          tree += p.cpu
          break
        }
        at = procs.get(at)?.ppid ?? 0
      }
    }
    return { busy, tree, at: performance.now() }
  } catch {
    return undefined
  }
}

/** Fraction of the machine's CPU used by foreign processes between two snapshots. */
function foreignLoad (a, b) {
  if (a === undefined || b === undefined) return NaN
  const seconds = (b.at - a.at) / 1000
  const foreign = (b.busy - a.busy) - (b.tree - a.tree)
  return Math.max(0, foreign / (seconds * CLK_TCK * os.availableParallelism()))
}

let sampleSerial = 0

/**
 * One measured sample (warm-up included) in its own autocannon process. A sample during which
 * foreign processes used more than `config.noiseLimit` of the machine is run again (up to
 * `config.retries` times, while the time budget lasts); the quietest attempt is kept.
 */
async function sample (variant, server, round) {
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
  // Forced misses: ids from a range no other sample (or attempt, or warm-up) uses.
  const serial = ++sampleSerial
  const paths = variant.paths?.start !== undefined ? { ...variant.paths, start: serial * 100_000_000 } : variant.paths
  const spec = { url: `http://127.0.0.1:${server.port}`, path: variant.path ?? '/', connections: config.connections, duration: config.duration, warmup: config.warmup, paths }
  const cpuBefore = cpuSnapshot()
  const child = track(spawn(process.execPath, [join(HERE, 'load.js'), JSON.stringify(spec)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] }), `autocannon ${variant.name}`)
  let out = ''
  child.stdout.on('data', (c) => { out += c })
  const [code] = await once(child, 'exit')
  const noise = foreignLoad(cpuBefore, cpuSnapshot())
  if (code !== 0) throw new Error(`autocannon for ${variant.name} exited with ${code}`)
  const result = JSON.parse(out.trim().split('\n').pop())
  const after = await calls(server.port)
  const d = (field) => (after.stats?.[field] ?? 0) - (before.stats?.[field] ?? 0)
  const s = {
    round,
    rps: result.requests / result.duration,
    p99: result.latency.p99,
    requests: result.requests,
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
  }
  s.problems = checkSample(variant, s)
  return s
}

function checkSample (variant, s) {
  const problems = []
  const where = `${variant.name} round ${s.round + 1}`
  if (s.requests === 0) problems.push(`${where}: no requests completed`)
  if (s.errors > 0 || s.non2xx > 0) problems.push(`${where}: ${s.errors} errors, ${s.non2xx} non-2xx`)
  if (s.bypasses > 0 || s.storeErrors > 0) problems.push(`${where}: ${s.bypasses} bypasses, ${s.storeErrors} store errors`)
  if (variant.kind === 'hit' || variant.kind === 'ceiling') {
    // Warm-up requests are in the server's counts, not in autocannon's: counts >= requests.
    if (s.handlerCalls > 0) problems.push(`${where}: the handler ran ${s.handlerCalls} times under load (expected 0: every request a hit)`)
    if (variant.kind === 'hit' && (s.hits < s.requests || s.misses > 0)) problems.push(`${where}: ${s.hits} hits, ${s.misses} misses for ${s.requests} requests`)
  }
  if (variant.kind === 'miss' && (s.hits > 0 || s.misses < s.requests || s.handlerCalls < s.requests)) {
    problems.push(`${where}: ${s.hits} hits, ${s.misses} misses, ${s.handlerCalls} handler calls for ${s.requests} requests (expected every request a miss)`)
  }
  if (variant.kind === 'origin' && s.handlerCalls < s.requests) problems.push(`${where}: ${s.handlerCalls} handler calls for ${s.requests} requests`)
  return problems
}

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function machine () {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : ''
  return {
    nproc: os.availableParallelism(),
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    redis: versionOf('redis-server', ['--version'], /v=(\S+)/),
    memcached: versionOf('memcached', ['-V'], /memcached (\S+)/),
    loadavg: os.loadavg().map((l) => l.toFixed(2)).join(' '),
  }
}

function build () {
  if (args['no-build']) {
    if (!existsSync(join(ROOT, 'dist/esm/index.js'))) throw new Error('dist/esm/index.js is missing: run without --no-build')
    return
  }
  console.log('npm run build ...')
  const result = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  if (result.status !== 0) throw new Error(`npm run build failed (${result.status ?? result.signal})`)
}

function selectVariants () {
  let selected = VARIANTS
  if (args.only !== undefined) {
    const names = new Set(args.only.split(',').map((s) => s.trim()).filter(Boolean))
    for (const name of names) {
      if (name !== 'footprint' && !VARIANTS.some((v) => v.name === name)) throw new Error(`--only: unknown variant '${name}' (known: ${VARIANTS.map((v) => v.name).join(', ')}, footprint)`)
    }
    // A ratio needs its baseline in the same run.
    for (const v of VARIANTS) if (names.has(v.name) && v.baseline !== undefined) names.add(v.baseline)
    selected = VARIANTS.filter((v) => names.has(v.name))
  } else if (args.quick || args['no-ceilings']) {
    selected = VARIANTS.filter((v) => v.kind !== 'ceiling')
  }
  return selected
}

function pct (fraction) {
  return Number.isNaN(fraction) ? 'n/a' : `${(fraction * 100).toFixed(0)}%`
}

function mb (bytes) {
  return fmt(bytes / 1048576, 1)
}

function fmt (n, digits = 0) {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

// ---------------------------------------------------------------------------------------------

async function startStores (variants, tmp) {
  const stores = {}
  if (variants.some((v) => v.needs === 'redis')) stores.redis = await startRedis(tmp)
  if (variants.some((v) => v.needs === 'memcached')) stores.memcached = await startMemcached()
  return stores
}

function storeEnv (stores) {
  return {
    ...(stores.redis ? { REDIS_URL: stores.redis.url } : {}),
    ...(stores.memcached ? { MEMCACHED_SERVERS: stores.memcached.servers } : {}),
  }
}

async function runFootprint (compression) {
  return await withDistRetry(() => spawnFootprint(compression))
}

async function spawnFootprint (compression) {
  let stderr = ''
  const child = track(spawn(process.execPath, ['--expose-gc', join(HERE, 'footprint.js'), '--compression', compression], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }), 'footprint')
  let out = ''
  child.stdout.on('data', (c) => { out += c })
  child.stderr.on('data', (c) => { stderr = (stderr + c).slice(-4000) })
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`footprint run exited with ${code}:\n${stderr}`)
  return JSON.parse(out.trim().split('\n').pop())
}

async function profile (names, tmp) {
  const variants = names.split(',').map((n) => {
    const v = VARIANTS.find((x) => x.name === n.trim())
    if (v === undefined) throw new Error(`--profile: unknown variant '${n}'`)
    return v
  })
  const stores = await startStores(variants, tmp)
  const dir = join(HERE, 'profiles')
  mkdirSync(dir, { recursive: true })
  for (const variant of variants) {
    const profileDir = join(dir, `${variant.name}-${Date.now()}`)
    const server = await startServer(variant, storeEnv(stores), profileDir)
    const problems = await verify(variant, server)
    const s = await sample(variant, server, 0)
    await stop(server.child)
    const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'))
    console.log(`\n## ${variant.name}: ${fmt(s.rps)} req/s, p99 ${s.p99} ms (under --cpu-prof)${[...problems, ...s.problems].map((p) => `\n  ! ${p}`).join('')}`)
    if (file === undefined) {
      console.log('  no profile written')
      continue
    }
    console.log(`profile: ${join(profileDir, file)}`)
    console.log(summarizeProfile(JSON.parse(readFileSync(join(profileDir, file), 'utf8')), { top: 30 }))
  }
}

async function main () {
  const tmp = mkdtempSync(join(os.tmpdir(), 'fastify-server-cache-bench-'))
  try {
    build()
    if (args.profile !== undefined) return await profile(args.profile, tmp)
    const variants = selectVariants()
    const footprint = !args['no-footprint'] && (args.only === undefined || args.only.split(',').includes('footprint'))
    const info = machine()
    const started = Date.now()
    // Retries may stretch the run to 9.5 minutes, or by a quarter of its planned length if more.
    const groups = groupsOf(variants)
    samplesLeft = groups.reduce((a, g) => a + (g.members.length === 0 ? 1 : g.members.length + 2), 0) * config.rounds
    retryDeadline = started + Math.max(570, 1.25 * (90 + samplesLeft * sampleSeconds())) * 1000
    console.log(`${info.nproc} CPUs (${info.cpu}), Node ${info.node}, redis ${info.redis}, memcached ${info.memcached}, load average ${info.loadavg}`)
    console.log(`${variants.length} variants x ${config.rounds} rounds, autocannon -c ${config.connections} -d ${config.duration} after ${config.warmup} s warm-up; payload ${PAYLOAD_BYTES} bytes; compression ${config.compression ? 'default (on)' : 'off'}`)

    // First, while no server runs: the footprint process has the machine to itself.
    const problems = []
    const footprints = []
    // Default options (compression on) always; the full run also with compression off.
    for (const compression of footprint ? (args.quick ? ['on'] : ['on', 'off']) : []) {
      const f = await runFootprint(compression)
      footprints.push(f)
      problems.push(...f.problems)
      console.log(`footprint (compression ${compression}): ${fmt(f.entriesKept)} of ${fmt(f.inserted)} entries kept, RSS ${mb(f.rssBefore)} -> ${mb(f.rssAfter)} MB`)
    }

    const stores = await startStores(variants, tmp)
    const env = storeEnv(stores)
    const servers = new Map()
    for (const variant of variants) {
      const server = await startServer(variant, env)
      servers.set(variant.name, server)
      problems.push(...await verify(variant, server))
    }
    if (problems.length > 0) console.log(`verification problems:\n${problems.map((p) => `  ! ${p}`).join('\n')}`)

    const samples = new Map(variants.map((v) => [v.name, []]))
    const run = async (variant, round) => {
      const s = await sample(variant, servers.get(variant.name), round)
      samples.get(variant.name).push(s)
      problems.push(...s.problems)
      console.log(`round ${round + 1}/${config.rounds}  ${variant.name.padEnd(20)} ${fmt(s.rps).padStart(7)} req/s  p99 ${String(s.p99).padStart(3)} ms  other load ${pct(s.noise)}${s.attempts > 1 ? ` (best of ${s.attempts})` : ''}${s.problems.length > 0 ? '  !' : ''}`)
    }
    for (let round = 0; round < config.rounds; round++) {
      // Interleaved: every round visits every group, each round starting at another group and,
      // within a group, at another variant. A group's baseline is sampled at its start and at
      // its end, so that each variant's ratio compares it with baseline samples that bracket it.
      for (const { baseline, members } of rotate(groups, round)) {
        await run(baseline, round)
        if (members.length === 0) continue
        for (const variant of rotate(members, round)) await run(variant, round)
        await run(baseline, round)
      }
    }

    const finalCalls = new Map()
    for (const [name, server] of servers) finalCalls.set(name, (await calls(server.port)).calls)
    await Promise.all([...servers.values()].map((s) => stop(s.child)))

    const results = summarize(variants, samples, finalCalls)
    const report = {
      date: new Date().toISOString(),
      machine: { ...info, loadavgEnd: os.loadavg().map((l) => l.toFixed(2)).join(' ') },
      config: { ...config, quick: args.quick, payloadBytes: PAYLOAD_BYTES },
      seconds: Math.round((Date.now() - started) / 1000),
      results,
      footprints,
      problems,
    }
    const out = args.json ?? join(HERE, 'results', 'latest.json')
    mkdirSync(dirname(out), { recursive: true })
    writeFileSync(out, JSON.stringify(report, null, 2) + '\n')
    console.log('\n' + table(report))
    console.log(`\nresults: ${out}`)
    if (problems.length > 0) {
      console.log(`\n${problems.length} check(s) failed:\n${problems.map((p) => `  ! ${p}`).join('\n')}`)
      process.exitCode = 1
    }
  } finally {
    await Promise.all([...children].map((c) => stop(c)))
    rmSync(tmp, { recursive: true, force: true })
  }
}

/** Variants grouped under their baseline (a variant without one is a group's baseline). */
function groupsOf (variants) {
  const groups = variants.filter((v) => v.baseline === undefined).map((baseline) => ({ baseline, members: [] }))
  for (const v of variants) {
    if (v.baseline !== undefined) groups.find((g) => g.baseline.name === v.baseline).members.push(v)
  }
  return groups
}

function rotate (list, by) {
  const shift = list.length === 0 ? 0 : by % list.length
  return [...list.slice(shift), ...list.slice(0, shift)]
}

function summarize (variants, samples, finalCalls) {
  const med = new Map(variants.map((v) => [v.name, median(samples.get(v.name).map((s) => s.rps))]))
  // Paired ratio: each round's sample over the mean of the two baseline samples around it.
  const paired = (v) => {
    const base = samples.get(v.baseline)
    const ratios = samples.get(v.name).map((s) => {
      const around = base.filter((b) => b.round === s.round)
      return s.rps / (around.reduce((a, b) => a + b.rps, 0) / around.length)
    })
    return { ratio: median(ratios), ratios }
  }
  return variants.map((v) => {
    const list = samples.get(v.name)
    const rps = med.get(v.name)
    const { ratio, ratios } = v.baseline === undefined ? {} : paired(v)
    const rpsList = list.map((s) => s.rps)
    return {
      name: v.name,
      what: v.what,
      kind: v.kind,
      rps,
      samples: rpsList.map((r) => Math.round(r)),
      spread: (Math.max(...rpsList) - Math.min(...rpsList)) / rps,
      p99: median(list.map((s) => s.p99)),
      xRaw: v.baseline === 'raw' ? ratio : med.has('raw') ? rps / med.get('raw') : undefined,
      baseline: v.baseline,
      ratio,
      ratios: ratios?.map((r) => Number(r.toFixed(3))),
      ratioOfMedians: v.baseline === undefined ? undefined : rps / med.get(v.baseline),
      target: v.target,
      met: v.target === undefined || ratio === undefined ? undefined : ratio >= v.target,
      handlerCalls: finalCalls.get(v.name),
      requests: list.reduce((a, s) => a + s.requests, 0),
      noise: list.map((s) => s.noise),
      attempts: list.reduce((a, s) => a + s.attempts, 0),
      ok: list.every((s) => s.problems.length === 0),
    }
  })
}

function table (report) {
  const lines = [
    '| variant | req/s (median) | spread | p99 ms | × raw | × baseline | target | handler calls | other load | checks |',
    '| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | --- |',
  ]
  for (const r of report.results) {
    const vsBase = r.baseline === undefined || r.baseline === 'raw' ? '' : `${r.ratio.toFixed(2)} (${r.baseline})`
    const target = r.target === undefined ? '' : `≥ ${r.target.toFixed(2)}${r.baseline === 'raw' ? '' : ` × ${r.baseline}`}: ${r.met ? 'met' : '**missed**'}`
    lines.push(`| ${r.name} | ${fmt(r.rps)} | ${(r.spread * 100).toFixed(1)}% | ${r.p99} | ${r.xRaw === undefined ? '' : r.xRaw.toFixed(2)} | ${vsBase} | ${target} | ${fmt(r.handlerCalls)} | ${pct(Math.max(...r.noise))} | ${r.ok ? 'ok' : 'FAILED'} |`)
  }
  for (const f of report.footprints) {
    lines.push('', `Memory footprint (compression ${f.compression ? 'on, the default' : 'off'}): ${fmt(f.inserted)} responses of ${f.bodyBytes.join('-')} B cached into the memory store ` +
      `(maxBytes ${fmt(f.maxBytes)}, maxEntries ${fmt(f.maxEntries)}): ${fmt(f.entriesKept)} kept, the newest; ≈ ${fmt(f.storedBytes)} B accounted ` +
      `(${fmt(f.entryBytes)} B per entry) - ${f.withinBound ? 'within' : '**over**'} the bound; MemoryStore filled directly: peak ${fmt(f.direct.peakBytes ?? NaN)} B. ` +
      `RSS ${mb(f.rssBefore)} MB before, ${mb(f.rssAfter)} MB after (+${mb(f.rssAfter - f.rssBefore)} MB; heap +${mb(f.heapAfter - f.heapBefore)} MB, ` +
      `external (Buffers) +${mb(f.externalAfter - f.externalBefore)} MB); fill took ${fmt(f.fillMs / 1000, 1)} s.`)
  }
  const m = report.machine
  lines.push('', `${m.nproc} CPUs (${m.cpu}), Node ${m.node}, redis ${m.redis}, memcached ${m.memcached}; load average ${m.loadavg} at start, ${m.loadavgEnd} at end; ` +
    `${report.config.rounds} rounds of -c ${report.config.connections} -d ${report.config.duration} (+${report.config.warmup} s warm-up) in ${report.seconds} s. ` +
    'req/s and p99: medians over all samples (baselines: 2 per round); × baseline (and × raw for the variants measured against raw): median over the rounds of ' +
    'the sample / the mean of the two baseline samples that bracket it in its round; × raw for other variants: ratio of medians; ' +
    'spread = (max - min) / median of the samples; other load = the most CPU that processes outside this run used during one of the ' +
    `variant's samples, as a share of the machine (samples above ${pct(report.config.noiseLimit)} were retried up to ${report.config.retries} times, ` +
    `the quietest kept; ${report.results.reduce((a, r) => a + r.attempts, 0) - report.results.length * report.config.rounds} retries in all).`)
  return lines.join('\n')
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
