// The wrk load generator (`npm run bench -- --load wrk`), run by benchmarks/run.js as its own
// process like benchmarks/load.js, with the same argument and the same one-line JSON answer: an
// optional warm-up, then one measured wrk run (C, epoll, `-t threads`), whose text output
// (`--latency`) is parsed. Paths come from benchmarks/wrk-paths.lua: one fixed path (a static
// request), ids cycling 0..cycle-1 (pre-built requests, each wrk thread its share of the keys),
// or ids counting up from `start` (never twice).
//
//   node benchmarks/load-wrk.js '{"url":"http://127.0.0.1:PORT","path":"/items/1","connections":50,
//                                 "duration":5,"warmup":1,"paths":null,"threads":2,"check":"HIT"}'
//
// `check`: the x-cache value every warm-up response must carry (HIT, MISS), or 'status' for
// status 200 only. Only the warm-up checks responses (wrk hands each response to Lua only when
// the script asks for it, which costs the load generator CPU); the measured run counts non-2xx
// statuses (wrk: status > 399) and socket errors. wrk's -d takes whole seconds: a fractional
// duration ends the run with SIGINT, after which wrk prints its results as usual.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const opts = JSON.parse(process.argv[2])
const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'wrk-paths.lua')
const threads = Math.max(1, Math.min(opts.threads ?? 2, opts.connections))

async function run (seconds, offset, check) {
  const p = opts.paths
  const mode = p === null || p === undefined ? ['one', '-', '-'] : p.cycle !== undefined ? ['cycle', p.prefix, String(p.cycle)] : ['unique', p.prefix, String(p.start + offset)]
  const url = opts.url + (p === null || p === undefined ? (opts.path ?? '/') : '/')
  const args = ['-t', String(threads), '-c', String(opts.connections), '-d', `${Math.ceil(seconds)}s`, '--latency', '-s', SCRIPT, url, '--', String(threads), ...mode, check ?? '-']
  const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (c) => { out += c })
  child.stderr.on('data', (c) => { err += c })
  const timer = Number.isInteger(seconds) ? undefined : setTimeout(() => child.kill('SIGINT'), seconds * 1000)
  const [code, signal] = await once(child, 'exit')
  clearTimeout(timer)
  if (code !== 0) throw new Error(`wrk exited with ${code ?? signal}: ${err.trim()}\n${out}`)
  return parse(out)
}

/** wrk's text output (with --latency) plus the BENCH_CHECKS line of the script's done(). */
function parse (out) {
  const number = (re, what) => {
    const m = re.exec(out)
    if (m === null) throw new Error(`wrk output without ${what}:\n${out}`)
    return m
  }
  const rps = Number(number(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec')[1])
  const requests = Number(number(/^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)\b/m, 'a request count')[1])
  const p99 = number(/^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$/m, 'a latency p99 (--latency)')
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  const checksLine = /^BENCH_CHECKS (\{.*\})\s*$/m.exec(out)
  const checks = checksLine === null ? undefined : JSON.parse(checksLine[1])
  return {
    rps,
    requests,
    duration: rps > 0 ? requests / rps : 0,
    p99: toMs(Number(p99[1]), p99[2]),
    non2xx,
    errors: socket === null ? 0 : Number(socket[1]) + Number(socket[2]) + Number(socket[3]),
    timeouts: socket === null ? 0 : Number(socket[4]),
    checks,
  }
}

function toMs (value, unit) {
  return value * { us: 0.001, ms: 1, s: 1000, m: 60_000 }[unit]
}

// Warm-up ids come from far above the measured ones, as in load.js. Only the warm-up checks
// every response (status, and x-cache when the variant sends it).
const warmup = opts.warmup > 0 ? await run(opts.warmup, 50_000_000, opts.check ?? 'status') : undefined
const result = await run(opts.duration, 0)
const c = warmup?.checks
process.stdout.write(JSON.stringify({
  rps: result.rps,
  requests: result.requests,
  warmupRequests: warmup?.requests ?? 0,
  latency: { p99: Math.round(result.p99 * 100) / 100 },
  non2xx: result.non2xx,
  errors: result.errors,
  timeouts: result.timeouts,
  duration: result.duration,
  // Responses of the warm-up run that failed the script's checks (see wrk-paths.lua).
  checks: c === undefined ? undefined : { checked: c.checked, badStatus: c.badStatus, badCache: c.badCache, lastBad: c.lastBad, expected: opts.check ?? 'status' },
}) + '\n')
