// The command line: options, --help, and the settings every part of the run reads.

import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

export const BENCHMARKS = dirname(dirname(fileURLToPath(import.meta.url)))
export const ROOT = dirname(BENCHMARKS)

export const { values: args } = parseOrExit(() => parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    load: { type: 'string' },
    'wrk-threads': { type: 'string' },
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
}))

if (args.help) {
  // The comment block at the top of run.js is the help text.
  const text = readFileSync(join(BENCHMARKS, 'run.js'), 'utf8').split('\n').slice(1)
  console.log(text.slice(0, text.findIndex((l) => !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'))
  process.exit(0)
}

export const config = parseOrExit(() => ({
  rounds: int('rounds', 3, 1, 20),
  duration: num('duration', args.quick ? 1 : 5, 1, 60),
  warmup: num('warmup', args.quick ? 0.5 : 1, 0, 30),
  connections: int('connections', 50, 1, 500),
  // The load generator: autocannon (default, a Node process) or wrk (C; needs `wrk` on the PATH).
  load: oneOf('load', 'autocannon', ['autocannon', 'wrk']),
  // wrk threads (each with its own share of the connections); at most --connections.
  wrkThreads: int('wrk-threads', 2, 1, 16),
  compression: !args['no-compression'],
  // A sample during which other processes used more than this share of the machine is retried.
  noiseLimit: num('noise-limit', 0.1, 0, 1),
  retries: int('retries', args.quick ? 0 : 2, 0, 10),
}))

/** A bad command line ends the run with the reason, before anything starts. */
function parseOrExit (parse) {
  try {
    return parse()
  } catch (err) {
    console.error(`benchmarks/run.js: ${err.message} (see --help)`)
    process.exit(2)
  }
}

function oneOf (name, fallback, allowed) {
  const value = args[name] ?? fallback
  if (!allowed.includes(value)) throw new Error(`--${name}: expected one of ${allowed.join(', ')}, got '${value}'`)
  return value
}

function int (name, fallback, min, max) {
  return num(name, fallback, min, max, 'an integer')
}

function num (name, fallback, min, max, kind = 'a number') {
  const value = args[name]
  const n = value === undefined ? fallback : Number(value)
  const ok = kind === 'an integer' ? Number.isInteger(n) : Number.isFinite(n)
  if (!ok || n < min || n > max) throw new Error(`--${name}: expected ${kind} in ${min}..${max}, got '${value}'`)
  return n
}
