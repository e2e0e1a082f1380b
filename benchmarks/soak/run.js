// npm run soak: K app instances on one shared Redis or Memcached, a truth process they read
// and bump, a mixed load from here, and a check that no GET goes back behind a PATCH already
// answered. `--help` lists the options; progress goes to stderr, the summary to stdout.

import { randomInt } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { createChecker } from './checker.js'
import { drive } from './driver.js'
import { runFaults } from './faults.js'
import { HELP, OptionError, parseOptions } from './options.js'
import { startNode, stopAll } from './processes.js'
import { createRandom } from './random.js'
import { summarize } from './report.js'
import { startStore } from './servers.js'

let options
try {
  options = parseOptions(process.argv.slice(2))
} catch (err) {
  if (!(err instanceof OptionError)) throw err
  console.error(`soak: ${err.message}`)
  process.exit(2)
}
if (options.help) {
  console.log(HELP)
  process.exit(0)
}
options.seed ??= randomInt(2 ** 32)

const log = (line) => console.error(`soak: ${line}`)
const abort = new AbortController()
let store
let driving = false
// Exits from here on are expected, not crashes.
let stopping = false
let shuttingDown = false

async function shutdown (code) {
  if (shuttingDown) return
  shuttingDown = stopping = true
  // Every stop is bounded (SIGKILL after 5 s), and so is this as a whole.
  await Promise.race([Promise.all([stopAll(), store?.stop()]), sleep(15_000)]).catch((err) => log(`cleanup: ${err.message}`))
  process.exit(code)
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    // A second signal means now: the exit handler in processes.js still kills every child.
    if (abort.signal.aborted) process.exit(130)
    abort.abort()
    if (driving) {
      log(`${signal}: stopping the load, then everything`)
      return
    }
    log(`${signal}: stopping`)
    shutdown(130)
  })
}

async function main () {
  const durationMs = options.duration * 1000
  log(`starting ${options.backend}, the truth and ${options.instances} instance(s) (seed ${options.seed})`)
  store = await startStore(options.backend)
  const truth = await startNode('./truth.js', [], 'truth')
  // Its own prefix per run: a soak never reads entries another run left in a shared server.
  const keyPrefix = `soak-${process.pid}-${options.seed}`
  const instances = await Promise.all(Array.from({ length: options.instances }, (_, index) => startNode('./instance.js', [JSON.stringify({
    index,
    backend: options.backend,
    store: store.address,
    truthPort: truth.port,
    keyPrefix,
    lease: options.lease,
    timeout: options.timeout,
    delay: options.delay,
    seed: (options.seed + index + 1) >>> 0,
  })], `instance ${index}`)))

  const crashes = []
  for (const { child } of [truth, ...instances]) {
    child.once('exit', (code, signal) => {
      if (!stopping) crashes.push(`${child.label} (${code ?? signal}) ${child.stderrTail().trim().slice(-500)}`)
    })
  }

  log(`${options.duration} s of load on ${store.kind} port ${store.port}, instances on ports ${instances.map((i) => i.port).join(', ')}`)
  driving = true
  const checker = createChecker()
  // Separate streams: whether faults are on does not change the operation sequence.
  const faultsRun = runFaults({
    server: store,
    kinds: [options.pause && 'pause', options.kill && 'kill'].filter(Boolean),
    durationMs,
    random: createRandom(options.seed ^ 0x5bd1e995),
    signal: abort.signal,
    log,
  }).catch((err) => {
    crashes.push(`fault injection: ${err.message}`)
    return { pause: 0, kill: 0 }
  })
  const stats = await drive({
    ports: instances.map((instance) => instance.port),
    connections: options.connections,
    durationMs,
    random: createRandom(options.seed),
    checker,
    signal: abort.signal,
  })
  const faults = await faultsRun
  stopping = true

  const { text, ok } = summarize({ options, stats, violations: checker.violations, faults, crashes })
  console.log(text)
  return abort.signal.aborted ? 130 : ok ? 0 : 1
}

main().then((code) => shutdown(code), (err) => {
  log(err.stack ?? String(err))
  shutdown(1)
})
