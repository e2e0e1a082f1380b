// The command line: options, --help, and the settings every part of the run reads.

import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

export const BENCHMARKS = dirname(dirname(fileURLToPath(import.meta.url)))
export const ROOT = dirname(BENCHMARKS)

export const { values: args } = parseArgs({
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
  // The comment block at the top of run.js is the help text.
  const text = readFileSync(join(BENCHMARKS, 'run.js'), 'utf8').split('\n').slice(1)
  console.log(text.slice(0, text.findIndex((l) => !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'))
  process.exit(0)
}

export const config = {
  rounds: int(args.rounds, 3, 1, 20),
  duration: num(args.duration, args.quick ? 1 : 5, 1, 60),
  warmup: num(args.warmup, args.quick ? 0.5 : 1, 0, 30),
  connections: int(args.connections, 50, 1, 500),
  compression: !args['no-compression'],
  // A sample during which other processes used more than this share of the machine is retried.
  noiseLimit: num(args['noise-limit'], 0.1, 0, 1),
  retries: int(args.retries, args.quick ? 0 : 2, 0, 10),
}

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
