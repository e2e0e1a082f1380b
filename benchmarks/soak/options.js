// Command-line options of `npm run soak`. A bad option is an OptionError, whose message names it:
// run.js prints that one line and exits 2.

export class OptionError extends Error {}

export const HELP = `Usage: npm run soak -- [options]    (or: node benchmarks/soak/run.js [options])

Starts a cache server, a truth process and N app instances sharing the cache, drives a mixed
load (GET item, GET list, PATCH) at them and checks that no GET returns a version older than a
PATCH answered before the GET was sent. Exits 1 on any violation, 5xx or failed request.

Options:
  --backend redis|memcached  shared cache server (default redis)
  --instances N              app instances, 1-16 (default 3)
  --duration S               seconds of load, 1-3600 (default 60)
  --connections N            concurrent requests, 1-1024 (default 32)
  --delay MS                 GET handlers wait 0..MS ms after reading the truth, 0-1000 (default 30)
  --lease                    plugin option lease: { wait: 2000 } (default lease: false)
  --timeout MS               plugin option operationTimeout, 10-10000 (default the plugin's 250)
  --faults                   both --pause and --kill
  --pause                    SIGSTOP the cache server for 1-3 s, a few times
  --kill                     SIGKILL the cache server and restart it on its port, a few times
  --seed N                   seed of the operation mix and delays, 0-4294967295 (default random)
  --help                     this text`

const integer = (min, max) => (value) => /^\d+$/.test(value) && Number(value) >= min && Number(value) <= max
  ? Number(value)
  : invalid(`an integer from ${min} to ${max}`)
const seconds = (min, max) => (value) => /^\d+(\.\d+)?$/.test(value) && Number(value) >= min && Number(value) <= max
  ? Number(value)
  : invalid(`a number of seconds from ${min} to ${max}`)
const oneOf = (...choices) => (value) => choices.includes(value) ? value : invalid(choices.join(' or '))

// Thrown by the parsers above and completed with the option's name below.
class Invalid extends Error {}
function invalid (expected) { throw new Invalid(expected) }

const VALUED = {
  backend: oneOf('redis', 'memcached'),
  instances: integer(1, 16),
  duration: seconds(1, 3600),
  connections: integer(1, 1024),
  delay: integer(0, 1000),
  seed: integer(0, 2 ** 32 - 1),
  timeout: integer(10, 10000),
}
const FLAGS = new Set(['lease', 'faults', 'pause', 'kill', 'help'])

export function parseOptions (argv) {
  const options = { backend: 'redis', instances: 3, duration: 60, connections: 32, delay: 30, lease: false, pause: false, kill: false, help: false, seed: undefined, timeout: undefined }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const match = /^--([a-z]+)(?:=(.*))?$/s.exec(arg)
    if (arg === '-h') {
      options.help = true
      continue
    }
    if (match === null) throw new OptionError(`unexpected argument ${JSON.stringify(arg)} (options start with --; see --help)`)
    const [, name, inline] = match
    if (FLAGS.has(name)) {
      if (inline !== undefined) throw new OptionError(`--${name} takes no value`)
      if (name === 'faults') options.pause = options.kill = true
      else options[name] = true
      continue
    }
    const parse = VALUED[name]
    if (parse === undefined) throw new OptionError(`unknown option --${name} (see --help)`)
    const value = inline ?? argv[++i]
    if (value === undefined) throw new OptionError(`--${name} needs a value`)
    try {
      options[name] = parse(value)
    } catch (err) {
      if (!(err instanceof Invalid)) throw err
      throw new OptionError(`--${name}: expected ${err.message}, got ${JSON.stringify(value)}`)
    }
  }
  return options
}
