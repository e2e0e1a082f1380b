// The built package (dist/) the servers import: building it, and waiting while someone else rebuilds it.

import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ROOT, args } from './config.js'

export function build () {
  if (args['no-build']) {
    if (!existsSync(join(ROOT, 'dist/esm/index.js'))) throw new Error('dist/esm/index.js is missing: run without --no-build')
    return
  }
  console.log('npm run build ...')
  const result = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  if (result.status !== 0) throw new Error(`npm run build failed (${result.status ?? result.signal})`)
}

/**
 * The built package must be complete before a process imports it: other work on this machine
 * (`npm test`, `npm run build`) may be rebuilding dist/ at that moment (it starts with rm -rf).
 */
async function waitForDist (ms = 120_000) {
  const files = ['dist/esm/index.js', 'dist/esm/package.json', 'dist/esm/lib/route-cache.js', 'dist/esm/lib/stores/create.js']
  const deadline = Date.now() + ms
  while (!files.every((f) => existsSync(join(ROOT, f)))) {
    if (Date.now() > deadline) throw new Error('dist/ is incomplete: run `npm run build`')
    await sleep(500)
  }
}

/** Runs `start` again (up to 3 times) when it failed because dist/ was being rebuilt. */
export async function withDistRetry (start) {
  for (let attempt = 1; ; attempt++) {
    await waitForDist()
    try {
      return await start()
    } catch (err) {
      if (attempt >= 3 || !/ERR_MODULE_NOT_FOUND|Cannot find module/.test(err.message)) throw err
      console.log(`  (dist/ was being rebuilt; retrying: ${err.message.split('\n')[0]})`)
      await sleep(2000)
    }
  }
}
