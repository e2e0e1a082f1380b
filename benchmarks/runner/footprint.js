// The memory-footprint runs: benchmarks/footprint.js in its own process, once per compression setting.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { track } from './children.js'
import { BENCHMARKS, ROOT } from './config.js'
import { withDistRetry } from './dist.js'
import { fmt, mb } from './report.js'

export async function runFootprints (modes) {
  const footprints = []
  for (const compression of modes) {
    const f = await withDistRetry(() => spawnFootprint(compression))
    footprints.push(f)
    console.log(`footprint (compression ${compression}): ${fmt(f.entriesKept)} of ${fmt(f.inserted)} entries kept, RSS ${mb(f.rssBefore)} -> ${mb(f.rssAfter)} MB`)
  }
  return footprints
}

async function spawnFootprint (compression) {
  let stderr = ''
  const child = track(spawn(process.execPath, ['--expose-gc', join(BENCHMARKS, 'footprint.js'), '--compression', compression], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }), 'footprint')
  let out = ''
  child.stdout.on('data', (c) => { out += c })
  child.stderr.on('data', (c) => { stderr = (stderr + c).slice(-4000) })
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`footprint run exited with ${code}:\n${stderr}`)
  return JSON.parse(out.trim().split('\n').pop())
}
