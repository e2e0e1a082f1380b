// The checks a variant's server must pass before it is measured.

import { isDeepStrictEqual } from 'node:util'
import { payload } from '../payload.js'
import { calls, get } from './servers.js'

/** Before any load: bodies, x-cache, handler counts, pre-warm. Returns problems found. */
export async function verify (variant, server) {
  const { port } = server
  const problems = []
  const plugin = variant.kind === 'hit' || variant.kind === 'miss'
  if (variant.kind === 'miss') {
    // Ids below 10^8: the load never requests them (every sample's ids start at n * 10^8).
    for (const id of [7, 8]) {
      const res = await get(port, `/slow/${id}`)
      problems.push(...checkBody(res, id, `${variant.name} /slow/${id}`))
      if (res.headers['x-cache'] !== 'MISS') problems.push(`${variant.name}: x-cache ${res.headers['x-cache']} on a new id, expected MISS`)
    }
  } else if (variant.paths?.start !== undefined) {
    const res = await get(port, '/slow/7')
    problems.push(...checkBody(res, 7, `${variant.name} /slow/7`))
  } else {
    const first = await get(port, '/items/1')
    const second = await get(port, '/items/1')
    problems.push(...checkBody(first, 1, `${variant.name} /items/1 (1st)`), ...checkBody(second, 1, `${variant.name} /items/1 (2nd)`))
    if (plugin && first.headers['x-cache'] !== 'MISS') problems.push(`${variant.name}: first x-cache ${first.headers['x-cache']}, expected MISS`)
    if (plugin && second.headers['x-cache'] !== 'HIT') problems.push(`${variant.name}: second x-cache ${second.headers['x-cache']}, expected HIT`)
    if (variant.prewarm !== undefined) {
      const ids = Array.from({ length: variant.prewarm }, (_, i) => i)
      problems.push(...await requestAll(port, '/items/', ids))
      for (const id of [0, 4321, variant.prewarm - 1]) {
        const res = await get(port, `/items/${id}`)
        problems.push(...checkBody(res, id, `${variant.name} /items/${id} after pre-warm`))
        // Ceilings send no x-cache: the handler-call count below proves their pre-warm.
        if (plugin && res.headers['x-cache'] !== 'HIT') problems.push(`${variant.name}: /items/${id} x-cache ${res.headers['x-cache']} after pre-warm, expected HIT`)
      }
    }
    const counted = await calls(port)
    const expected = variant.prewarm ?? 1
    if ((variant.kind === 'hit' || variant.kind === 'ceiling') && counted.calls !== expected) {
      problems.push(`${variant.name}: handler ran ${counted.calls} times for ${expected} distinct key(s)`)
    }
  }
  if (plugin) {
    const { stats } = await calls(port)
    if (stats.errors > 0 || stats.bypasses > 0 || stats.fallbackActive) problems.push(`${variant.name}: store not healthy: ${JSON.stringify(stats)}`)
  }
  return problems
}

/** The body must be payload(id), as JSON, whatever the variant. */
function checkBody (res, id, where) {
  const problems = []
  if (res.status !== 200) problems.push(`${where}: status ${res.status}`)
  if (!String(res.headers['content-type']).startsWith('application/json')) problems.push(`${where}: content-type ${res.headers['content-type']}`)
  let body
  try {
    body = JSON.parse(res.body)
  } catch {
    problems.push(`${where}: body is not JSON: ${res.body.slice(0, 80)}`)
  }
  if (body !== undefined && !isDeepStrictEqual(body, payload(id))) problems.push(`${where}: body differs from payload(${id})`)
  return problems
}

/** Requests `ids` with bounded concurrency (the many-keys pre-warm). */
async function requestAll (port, prefix, ids, concurrency = 16) {
  let next = 0
  const problems = []
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < ids.length) {
      const id = ids[next++]
      const res = await get(port, prefix + id)
      if (res.status !== 200 && problems.length < 5) problems.push(`${prefix}${id}: status ${res.status}`)
    }
  }))
  return problems
}
