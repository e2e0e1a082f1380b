// Noise: how much of the machine's CPU other processes used during a sample.

import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import os from 'node:os'

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100

// CPU time used on the machine by processes outside this run's process tree (other people's
// tests, say), as a fraction of all CPUs; steal time counts as foreign.
export function cpuSnapshot () {
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
export function foreignLoad (a, b) {
  if (a === undefined || b === undefined) return NaN
  const seconds = (b.at - a.at) / 1000
  const foreign = (b.busy - a.busy) - (b.tree - a.tree)
  return Math.max(0, foreign / (seconds * CLK_TCK * os.availableParallelism()))
}
