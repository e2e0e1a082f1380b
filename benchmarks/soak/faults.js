// Faults of the shared cache server during the run: a pause (SIGSTOP for 1-3 s: connections
// stay open and nothing answers) or a kill (SIGKILL, down 0.5-1.5 s, then an empty server on
// the same port). The plugin must fail open through both: no 5xx.

import { setTimeout as sleep } from 'node:timers/promises'

// The longest a fault keeps the server away, plus time to restart and for the instances to
// notice it is back: no fault starts closer than this to the end of the run.
const FAULT_SPAN = 6000

/**
 * Run the faults of `kinds` ('pause', 'kill'), alternating, spread evenly over the run. Resolves
 * the counts, always with the server running and not paused.
 */
export async function runFaults ({ server, kinds, durationMs, random, signal, log }) {
  const done = { pause: 0, kill: 0 }
  if (kinds.length === 0) return done
  const count = Math.min(10, Math.max(2, Math.floor(durationMs / 8000)))
  const started = Date.now()
  if (durationMs < FAULT_SPAN * 1.5) log(`no fault fits in ${durationMs / 1000} s of load: give --duration ${FAULT_SPAN * 1.5 / 1000} or more`)
  for (let i = 0; i < count; i++) {
    const at = started + (i + 1) * durationMs / (count + 1)
    if (at + FAULT_SPAN > started + durationMs) break
    await wait(at - Date.now(), signal)
    if (signal?.aborted) break
    const kind = kinds[i % kinds.length]
    if (kind === 'pause') {
      const ms = 1000 + Math.floor(random() * 2000)
      log(`fault at ${seconds(started)} s: pausing ${server.kind} for ${ms} ms`)
      server.pause()
      try {
        await wait(ms, signal)
      } finally {
        server.resume()
      }
    } else {
      const ms = 500 + Math.floor(random() * 1000)
      log(`fault at ${seconds(started)} s: killing ${server.kind}, restarting in ${ms} ms`)
      await server.kill()
      await wait(ms, signal)
      await server.restart()
      log(`fault at ${seconds(started)} s: ${server.kind} is back`)
    }
    done[kind]++
  }
  return done
}

const seconds = (since) => ((Date.now() - since) / 1000).toFixed(1)

// Ends early on abort (Ctrl-C) so that a paused or killed server is brought back at once.
async function wait (ms, signal) {
  if (ms <= 0 || signal?.aborted) return
  await sleep(ms, undefined, { signal }).catch(() => {})
}
