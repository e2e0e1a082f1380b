// --profile: each named variant's server under `node --cpu-prof` for one sample, and where its time went.

import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { summarizeProfile } from '../profile.js'
import { stop } from './children.js'
import { BENCHMARKS } from './config.js'
import { fmt } from './report.js'
import { sample } from './sample.js'
import { startServer } from './servers.js'
import { startStores, storeEnv } from './stores.js'
import { VARIANTS } from './variants.js'
import { verify } from './verify.js'

export async function profile (names, tmp) {
  const variants = names.split(',').map((n) => {
    const v = VARIANTS.find((x) => x.name === n.trim())
    if (v === undefined) throw new Error(`--profile: unknown variant '${n}'`)
    return v
  })
  const stores = await startStores(variants, tmp)
  const dir = join(BENCHMARKS, 'profiles')
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
