// The variants measured, and which of them this run measures (--only, --quick, --no-ceilings).

import { args } from './config.js'

const MANY_KEYS = 10_000
// Past the entry memo (16 MiB: ~12,000 of these entries): what a working set larger than it costs.
const MORE_KEYS = 100_000

// Variants. kind: origin (handler runs every time), hit (must never run the handler while
// measured), miss (must miss every time), ceiling (hand-written lower bounds of a hit's work),
// ceiling-miss (hand-written lower bounds of a miss's work: the handler runs every time).
// ceiling: the hand-written ceiling a plugin variant is also reported against (the table's
// "× ceiling": per round, both paired with their common baseline); ceilingTarget: the issue's
// target for that ratio. Selecting a variant with --only adds its ceiling (not with
// --no-ceilings).

const one = null
const many = { prefix: '/items/', cycle: MANY_KEYS }
const more = { prefix: '/items/', cycle: MORE_KEYS }
const unique = { prefix: '/slow/', start: 0 }

export const VARIANTS = [
  { name: 'raw', script: 'raw.js', path: '/items/1', kind: 'origin', what: 'plain Fastify route, JSON object serialized per request' },
  { name: 'plugin-uncached', script: 'plugin-uncached.js', path: '/items/1', kind: 'origin', baseline: 'raw', target: 0.98, what: 'plugin registered, route without config.cache' },
  { name: 'memory-hit', script: 'memory-hit.js', path: '/items/1', kind: 'hit', baseline: 'raw', target: 1.4, ceiling: 'ceil-map-sync', ceilingTarget: 0.95, what: 'memory store, one hot key' },
  { name: 'redis-hit', script: 'redis-hit.js', path: '/items/1', kind: 'hit', needs: 'redis', baseline: 'raw', target: 0.83, ceiling: 'ceil-ioredis', what: 'Redis store, one hot key' },
  { name: 'memcached-hit', script: 'memcached-hit.js', path: '/items/1', kind: 'hit', needs: 'memcached', baseline: 'raw', target: 0.70, ceiling: 'ceil-memjs', what: 'Memcached store, one hot key' },
  { name: 'redis-hit-tag1', script: 'redis-hit.js', env: { TAGS: '1' }, path: '/items/1', kind: 'hit', needs: 'redis', baseline: 'raw', what: 'Redis store, one hot key, 1 tag' },
  { name: 'redis-hit-tag3', script: 'redis-hit.js', env: { TAGS: '3' }, path: '/items/1', kind: 'hit', needs: 'redis', baseline: 'raw', what: 'Redis store, one hot key, 3 tags' },
  { name: 'memcached-hit-tag1', script: 'memcached-hit.js', env: { TAGS: '1' }, path: '/items/1', kind: 'hit', needs: 'memcached', baseline: 'raw', what: 'Memcached store, one hot key, 1 tag' },
  { name: 'memcached-hit-tag3', script: 'memcached-hit.js', env: { TAGS: '3' }, path: '/items/1', kind: 'hit', needs: 'memcached', baseline: 'raw', what: 'Memcached store, one hot key, 3 tags' },
  // versus: also reported as a ratio to that variant (per round, both paired with raw).
  { name: 'memory-hit-metrics', script: 'memory-hit.js', env: { METRICS: '1' }, path: '/items/1', kind: 'hit', baseline: 'raw', versus: 'memory-hit', versusTarget: 0.97, what: 'memory store, one hot key, Prometheus metrics on' },
  { name: 'redis-hit-metrics', script: 'redis-hit.js', env: { METRICS: '1' }, path: '/items/1', kind: 'hit', needs: 'redis', baseline: 'raw', versus: 'redis-hit', versusTarget: 0.97, what: 'Redis store, one hot key, Prometheus metrics on' },
  { name: 'raw-many', script: 'raw.js', paths: many, kind: 'origin', what: `plain route, ids cycling 0..${MANY_KEYS - 1}` },
  { name: 'memory-many', script: 'memory-hit.js', paths: many, kind: 'hit', prewarm: MANY_KEYS, baseline: 'raw-many', target: 1.0, ceiling: 'ceil-map-sync-many', what: `memory store, ${MANY_KEYS} keys cycling, pre-warmed` },
  { name: 'redis-many', script: 'redis-hit.js', paths: many, kind: 'hit', needs: 'redis', prewarm: MANY_KEYS, baseline: 'raw-many', ceiling: 'ceil-ioredis-many', ceilingTarget: 1.15, what: `Redis store, ${MANY_KEYS} keys cycling, pre-warmed` },
  { name: 'memcached-many', script: 'memcached-hit.js', paths: many, kind: 'hit', needs: 'memcached', prewarm: MANY_KEYS, baseline: 'raw-many', ceiling: 'ceil-memjs-many', ceilingTarget: 1.15, what: `Memcached store, ${MANY_KEYS} keys cycling, pre-warmed` },
  { name: 'redis-many-100k', script: 'redis-hit.js', paths: more, kind: 'hit', needs: 'redis', prewarm: MORE_KEYS, baseline: 'raw-many', ceiling: 'ceil-ioredis-many', what: `Redis store, ${MORE_KEYS} keys cycling (more than the entry memo holds), pre-warmed` },
  { name: 'memcached-many-100k', script: 'memcached-hit.js', paths: more, kind: 'hit', needs: 'memcached', prewarm: MORE_KEYS, baseline: 'raw-many', ceiling: 'ceil-memjs-many', what: `Memcached store, ${MORE_KEYS} keys cycling (more than the entry memo holds), pre-warmed` },
  { name: 'redis-many-tag1', script: 'redis-hit.js', env: { TAGS: '1' }, paths: many, kind: 'hit', needs: 'redis', prewarm: MANY_KEYS, baseline: 'raw-many', ceiling: 'ceil-ioredis-many', what: `Redis store, ${MANY_KEYS} keys cycling, 1 tag each` },
  { name: 'memcached-many-tag1', script: 'memcached-hit.js', env: { TAGS: '1' }, paths: many, kind: 'hit', needs: 'memcached', prewarm: MANY_KEYS, baseline: 'raw-many', ceiling: 'ceil-memjs-many', what: `Memcached store, ${MANY_KEYS} keys cycling, 1 tag each` },
  { name: 'slow-uncached', script: 'slow-uncached.js', paths: unique, kind: 'origin', what: '20 ms origin, no plugin, a new id per request' },
  { name: 'memory-miss', script: 'slow-miss.js', env: { STORE: 'memory' }, paths: unique, kind: 'miss', baseline: 'slow-uncached', target: 0.95, what: '20 ms origin, memory store, a new id per request (always a miss)' },
  { name: 'redis-miss', script: 'slow-miss.js', env: { STORE: 'redis' }, paths: unique, kind: 'miss', needs: 'redis', baseline: 'slow-uncached', target: 0.95, ceiling: 'ceil-ioredis-miss', ceilingTarget: 0.97, what: '20 ms origin, Redis store, always a miss' },
  { name: 'memcached-miss', script: 'slow-miss.js', env: { STORE: 'memcached' }, paths: unique, kind: 'miss', needs: 'memcached', baseline: 'slow-uncached', target: 0.95, ceiling: 'ceil-memjs-miss', ceilingTarget: 0.97, what: '20 ms origin, Memcached store, always a miss' },
  { name: 'ceil-string', script: 'raw-string.js', path: '/items/1', kind: 'ceiling', baseline: 'raw', what: 'ceiling: route sending a pre-serialized string' },
  { name: 'ceil-map', script: 'onrequest-map.js', path: '/items/1', kind: 'ceiling', baseline: 'raw', what: 'ceiling: onRequest hook replying from a Map' },
  { name: 'ceil-map-sync', script: 'onrequest-map-sync.js', path: '/items/1', kind: 'ceiling', baseline: 'raw', what: 'ceiling: synchronous app-level onRequest hook replying a string from a Map' },
  { name: 'ceil-ioredis', script: 'onrequest-ioredis.js', path: '/items/1', kind: 'ceiling', needs: 'redis', baseline: 'raw', what: 'ceiling: onRequest hook, one ioredis GET' },
  { name: 'ceil-memjs', script: 'onrequest-memjs.js', path: '/items/1', kind: 'ceiling', needs: 'memcached', baseline: 'raw', what: 'ceiling: onRequest hook, one memjs get' },
  // The many-keys ceilings: driven like the many-keys hits (same keys, same pre-warm, so every
  // measured request finds its key), against raw-many.
  { name: 'ceil-map-sync-many', script: 'onrequest-map-sync.js', paths: many, kind: 'ceiling', prewarm: MANY_KEYS, baseline: 'raw-many', what: `ceiling: synchronous onRequest hook, Map of ${MANY_KEYS} keys cycling` },
  { name: 'ceil-ioredis-many', script: 'onrequest-ioredis.js', paths: many, kind: 'ceiling', needs: 'redis', prewarm: MANY_KEYS, baseline: 'raw-many', what: `ceiling: onRequest hook, one ioredis GET, ${MANY_KEYS} keys cycling` },
  { name: 'ceil-memjs-many', script: 'onrequest-memjs.js', paths: many, kind: 'ceiling', needs: 'memcached', prewarm: MANY_KEYS, baseline: 'raw-many', what: `ceiling: onRequest hook, one memjs get, ${MANY_KEYS} keys cycling` },
  { name: 'ceil-ioredis-miss', script: 'miss-ceiling.js', env: { STORE: 'redis' }, paths: unique, kind: 'ceiling-miss', needs: 'redis', baseline: 'slow-uncached', what: 'ceiling: hand-written miss, ioredis GET + handler + SET' },
  { name: 'ceil-ioredis-lookup', script: 'miss-ceiling.js', env: { STORE: 'redis', WRITE: '0' }, paths: unique, kind: 'ceiling-miss', needs: 'redis', baseline: 'slow-uncached', what: 'ceiling: hand-written miss, ioredis GET + handler, no SET' },
  { name: 'ceil-memjs-miss', script: 'miss-ceiling.js', env: { STORE: 'memcached' }, paths: unique, kind: 'ceiling-miss', needs: 'memcached', baseline: 'slow-uncached', what: 'ceiling: hand-written miss, memjs get + handler + set' },
  { name: 'ceil-memjs-lookup', script: 'miss-ceiling.js', env: { STORE: 'memcached', WRITE: '0' }, paths: unique, kind: 'ceiling-miss', needs: 'memcached', baseline: 'slow-uncached', what: 'ceiling: hand-written miss, memjs get + handler, no set' },
  { name: 'ceil-ioredis-shared', script: 'onrequest-ioredis.js', env: { SHARED_READS: '1' }, path: '/items/1', kind: 'ceiling', needs: 'redis', baseline: 'raw', what: 'stretch: ioredis GET shared by concurrent lookups of a key' },
  { name: 'ceil-memjs-shared', script: 'onrequest-memjs.js', env: { SHARED_READS: '1' }, path: '/items/1', kind: 'ceiling', needs: 'memcached', baseline: 'raw', what: 'stretch: memjs get shared by concurrent lookups of a key' },
]
for (const v of VARIANTS) v.paths ??= one
for (const v of VARIANTS) {
  const c = VARIANTS.find((x) => x.name === v.ceiling)
  if (v.ceiling !== undefined && (c === undefined || c.baseline !== v.baseline)) throw new Error(`variant ${v.name}: ceiling ${v.ceiling} must exist and share its baseline`)
}

export function selectVariants () {
  let selected = VARIANTS
  if (args.only !== undefined) {
    const names = new Set(args.only.split(',').map((s) => s.trim()).filter(Boolean))
    for (const name of names) {
      if (name !== 'footprint' && !VARIANTS.some((v) => v.name === name)) throw new Error(`--only: unknown variant '${name}' (known: ${VARIANTS.map((v) => v.name).join(', ')}, footprint)`)
    }
    // A ratio needs the variants it is computed against in the same run: the `versus` variant,
    // the variant's own ceiling (unless --no-ceilings), then the baselines of all of them.
    for (const v of VARIANTS) if (names.has(v.name) && v.versus !== undefined) names.add(v.versus)
    if (!args['no-ceilings']) for (const v of VARIANTS) if (names.has(v.name) && v.ceiling !== undefined) names.add(v.ceiling)
    for (const v of VARIANTS) if (names.has(v.name) && v.baseline !== undefined) names.add(v.baseline)
    selected = VARIANTS.filter((v) => names.has(v.name))
  } else if (args.quick || args['no-ceilings']) {
    selected = VARIANTS.filter((v) => !v.kind.startsWith('ceiling'))
  }
  return selected
}
