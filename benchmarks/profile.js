// Summarize a V8 .cpuprofile (from `node --cpu-prof`): self time per package and the top
// functions by self time, split into "our code" (the plugin's dist/), Fastify and its
// dependencies, store clients, and Node internals.
//
//   node benchmarks/profile.js path/to/file.cpuprofile [top]
//
// The runner uses summarizeProfile() for `npm run bench -- --profile <variant>`.

import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** Which package a profiled function belongs to. */
export function category (url, functionName) {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)'
  if (url.startsWith('node:')) return 'node'
  const nm = url.lastIndexOf('/node_modules/')
  if (nm !== -1) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (url.includes('/dist/')) return 'plugin'
  if (url.includes('/benchmarks/')) return 'bench'
  return 'other'
}

function shortUrl (url) {
  const nm = url.lastIndexOf('/node_modules/')
  if (nm !== -1) return url.slice(nm + '/node_modules/'.length)
  const dist = url.indexOf('/dist/')
  if (dist !== -1) return url.slice(dist + 1)
  const bench = url.indexOf('/benchmarks/')
  if (bench !== -1) return url.slice(bench + 1)
  return url.replace(/^file:\/\//, '')
}

/** Self time in ms per profile node, from the sample timeline. */
function selfTimes (profile) {
  const self = new Map()
  const { samples = [], timeDeltas = [] } = profile
  for (let i = 0; i < samples.length; i++) {
    // timeDeltas[i + 1] is the time until the next sample: the time spent in samples[i].
    const dt = (timeDeltas[i + 1] ?? 0) / 1000
    self.set(samples[i], (self.get(samples[i]) ?? 0) + dt)
  }
  return self
}

export function summarizeProfile (profile, { top = 25 } = {}) {
  const self = selfTimes(profile)
  const byFunction = new Map()
  const byCategory = new Map()
  let total = 0
  let idle = 0
  for (const node of profile.nodes) {
    const ms = self.get(node.id) ?? 0
    if (ms === 0) continue
    const { functionName, url, lineNumber } = node.callFrame
    const cat = category(url, functionName)
    if (cat === '(idle)') {
      idle += ms
      continue
    }
    total += ms
    byCategory.set(cat, (byCategory.get(cat) ?? 0) + ms)
    const key = `${functionName || '(anonymous)'} ${url}:${lineNumber + 1}`
    const entry = byFunction.get(key) ?? { name: functionName || '(anonymous)', where: url === '' ? '' : `${shortUrl(url)}:${lineNumber + 1}`, cat, ms: 0 }
    entry.ms += ms
    byFunction.set(key, entry)
  }
  const pct = (ms) => `${((ms / total) * 100).toFixed(1).padStart(5)}%`
  const lines = [`busy ${total.toFixed(0)} ms, idle ${idle.toFixed(0)} ms`, '', 'self time by package:']
  for (const [cat, ms] of [...byCategory].sort((a, b) => b[1] - a[1])) {
    lines.push(`  ${pct(ms)}  ${ms.toFixed(0).padStart(6)} ms  ${cat}`)
  }
  lines.push('', `top ${top} functions by self time:`)
  for (const f of [...byFunction.values()].sort((a, b) => b.ms - a.ms).slice(0, top)) {
    lines.push(`  ${pct(f.ms)}  ${f.cat.padEnd(20)} ${f.name.slice(0, 40).padEnd(40)} ${f.where}`)
  }
  const ours = [...byFunction.values()].filter((f) => f.cat === 'plugin').sort((a, b) => b.ms - a.ms)
  lines.push('', `plugin (dist/) functions by self time, ${pct(ours.reduce((a, f) => a + f.ms, 0))} in all:`)
  for (const f of ours.slice(0, 15)) lines.push(`  ${pct(f.ms)}  ${f.name.slice(0, 40).padEnd(40)} ${f.where}`)
  const inclusive = inclusiveTimes(profile, self, (frame) => category(frame.url, frame.functionName) === 'plugin')
  lines.push('', 'plugin (dist/) functions by total time (self + everything they call, synchronously):')
  for (const f of inclusive.slice(0, 15)) lines.push(`  ${pct(f.ms)}  ${f.name.slice(0, 40).padEnd(40)} ${f.where}`)
  return lines.join('\n')
}

/** Time spent in or under each matching function (counted once per stack). */
function inclusiveTimes (profile, self, matches) {
  const parent = new Map()
  const byId = new Map()
  for (const node of profile.nodes) {
    byId.set(node.id, node)
    for (const child of node.children ?? []) parent.set(child, node.id)
  }
  const totals = new Map()
  for (const [id, ms] of self) {
    const seen = new Set()
    for (let at = id, depth = 0; at !== undefined && depth < 500; at = parent.get(at), depth++) {
      const frame = byId.get(at).callFrame
      if (!matches(frame)) continue
      const key = `${frame.functionName || '(anonymous)'} ${frame.url}:${frame.lineNumber + 1}`
      if (seen.has(key)) continue
      seen.add(key)
      const entry = totals.get(key) ?? { name: frame.functionName || '(anonymous)', where: `${shortUrl(frame.url)}:${frame.lineNumber + 1}`, ms: 0 }
      entry.ms += ms
      totals.set(key, entry)
    }
  }
  return [...totals.values()].sort((a, b) => b.ms - a.ms)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, top] = process.argv.slice(2)
  if (file === undefined) {
    console.error('usage: node benchmarks/profile.js FILE.cpuprofile [top]')
    process.exit(2)
  }
  console.log(summarizeProfile(JSON.parse(readFileSync(file, 'utf8')), { top: Number(top ?? 25) }))
}
