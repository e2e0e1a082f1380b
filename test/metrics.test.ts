import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Registry } from 'prom-client'
import type { FastifyInstance } from 'fastify'
import { withCache } from './helpers/app.js'
import { freePort, startRedisServer, waitFor } from './helpers/redis-server.js'

const TOKEN = 'metrics-token'
const management = { onRequest: async (request: { headers: Record<string, unknown> }, reply: { code: (n: number) => { send: () => void } }) => { if (request.headers['x-token'] !== TOKEN) reply.code(401).send() } }

/** Prometheus text → { 'name{a="b"}': value } (label order as exposed). */
function parse (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

async function scrape (app: FastifyInstance): Promise<Map<string, number>> {
  const res = await app.inject({ url: '/cache/metrics', headers: { 'x-token': TOKEN } })
  if (res.statusCode !== 200) throw new Error(`scrape: ${res.statusCode}`)
  return parse(res.body)
}

function routes (app: FastifyInstance, calls = { n: 0 }): { n: number } {
  app.get('/w/:id', { config: { cache: { keyPrefix: 'w', expiration: 1, staleWhileRevalidate: 30 } } }, async (request) => {
    calls.n++
    return { id: (request.params as { id: string }).id }
  })
  app.patch('/w/:id', {
    config: { cache: { keyPrefix: 'w', patternToInvalidateExtra: ['list*'], invalidateTags: ['all', 'owner'], invalidateNamespaces: ['ns'] } },
  }, async () => ({ ok: true }))
  return calls
}

t.test('redis: a scrape after a known mix of outcomes, invalidations and an outage', async (t) => {
  const server = await startRedisServer(t)
  const { app } = await withCache({ backend: 'redis', redis: { url: server.url }, metrics: {}, managementRoutes: management, operationTimeout: 200 })
  t.teardown(() => app.close())
  routes(app)
  await app.inject('/w/1') // miss
  await app.inject('/w/1') // hit
  await app.inject('/w/1') // hit
  await sleep(1100)
  t.equal((await app.inject('/w/1')).headers['x-cache'], 'STALE')
  let stale = 1
  let polledHits = 0
  await waitFor('the refresh', async () => {
    const seen = (await app.inject('/w/1')).headers['x-cache']
    if (seen === 'STALE') stale++
    else polledHits++
    return seen === 'HIT'
  }, 5000)
  await app.inject('/w/abc') // bypass: not an integer id
  t.equal((await app.inject({ method: 'PATCH', url: '/w/2' })).statusCode, 200)

  let m = await scrape(app)
  t.equal(m.get('fastify_cache_requests_total{route="w",outcome="hit"}'), 2 + polledHits)
  t.equal(m.get('fastify_cache_requests_total{route="w",outcome="miss"}'), 2, 'the first fill and the background refresh')
  t.equal(m.get('fastify_cache_requests_total{route="w",outcome="stale"}'), stale)
  t.equal(m.get('fastify_cache_requests_total{route="w",outcome="bypass"}'), 1)
  t.equal(m.get('fastify_cache_invalidations_total{kind="key"}'), 1)
  t.equal(m.get('fastify_cache_invalidations_total{kind="pattern"}'), 1)
  t.equal(m.get('fastify_cache_invalidations_total{kind="tag"}'), 2)
  t.equal(m.get('fastify_cache_invalidations_total{kind="namespace"}'), 1)
  t.ok((m.get('fastify_cache_store_operation_seconds_count{backend="redis",operation="get"}') ?? 0) >= 4, 'store reads observed')
  t.ok((m.get('fastify_cache_store_operation_seconds_bucket{le="0.1",backend="redis",operation="get"}') ?? 0) >= 1, 'latency buckets filled')
  t.equal(m.get('fastify_cache_store_errors_total{backend="redis",operation="get"}'), undefined, 'no errors yet')
  t.equal(m.get('fastify_cache_breaker_open{backend="redis"}'), 0)
  t.equal(m.get('fastify_cache_fallback_active{backend="redis"}'), 0)

  server.pause()
  t.teardown(() => server.resume())
  for (let i = 0; i < 4; i++) t.equal((await app.inject(`/w/${10 + i}`)).headers['x-cache'], 'BYPASS', 'the paused server is bypassed')
  m = await scrape(app)
  t.ok((m.get('fastify_cache_store_errors_total{backend="redis",operation="get"}') ?? 0) >= 3, 'timed-out reads counted as errors')
  t.equal(m.get('fastify_cache_breaker_open{backend="redis"}'), 1, 'the breaker opened')
  t.equal(m.get('fastify_cache_requests_total{route="w",outcome="bypass"}'), 5)
  server.resume()
  await waitFor('the breaker to close', async () => (await scrape(app)).get('fastify_cache_breaker_open{backend="redis"}') === 0, 10_000)
})

t.test('memory: store bytes and entries; stats reset does not move the counters back', async (t) => {
  const { app } = await withCache({ metrics: {}, managementRoutes: management })
  t.teardown(() => app.close())
  routes(app)
  for (let i = 1; i <= 3; i++) await app.inject(`/w/${i}`)
  await app.inject('/w/1')
  app.cache.resetStats()
  const m = await scrape(app)
  t.equal(m.get('fastify_cache_memory_store_entries'), 3)
  t.ok((m.get('fastify_cache_memory_store_bytes') ?? 0) > 3 * 12, 'bytes held')
  t.equal(m.get('fastify_cache_requests_total{route="w",outcome="miss"}'), 3)
  t.equal(m.get('fastify_cache_requests_total{route="w",outcome="hit"}'), 1)
  t.equal(app.cache.stats().routes.w.misses, 0, 'stats() was reset')
  t.equal([...m.keys()].some((k) => k.includes('store_operation_seconds_count{')), false, 'the memory store is not timed per operation')
})

t.test('a start-up fallback shows in fallback_active and the memory gauges', async (t) => {
  const port = await freePort()
  const { app } = await withCache({ backend: 'redis', redis: { url: `redis://127.0.0.1:${port}`, connectTimeout: 200 }, metrics: {}, managementRoutes: management })
  t.teardown(() => app.close())
  routes(app)
  await app.inject('/w/1')
  const m = await scrape(app)
  t.equal(m.get('fastify_cache_fallback_active{backend="redis"}'), 1)
  t.equal(m.get('fastify_cache_breaker_open{backend="redis"}'), 1)
  t.equal(m.get('fastify_cache_memory_store_entries'), 1, 'the fallback store holds the entry')
})

t.test('a custom registry receives the metrics; the plugin then serves no /metrics route', async (t) => {
  const registry = new Registry()
  const { app } = await withCache({ metrics: { registry, prefix: 'shop_cache_' }, managementRoutes: management })
  t.teardown(() => app.close())
  routes(app)
  await app.inject('/w/1')
  t.equal((await app.inject({ url: '/cache/metrics', headers: { 'x-token': TOKEN } })).statusCode, 404)
  const m = parse(await registry.metrics())
  t.equal(m.get('shop_cache_requests_total{route="w",outcome="miss"}'), 1)
})

t.test('1,000 distinct URLs of one route add no label values', async (t) => {
  const { app } = await withCache({ metrics: {}, managementRoutes: management })
  t.teardown(() => app.close())
  routes(app)
  await app.inject('/w/0')
  const before = [...(await scrape(app)).keys()].length
  for (let i = 1; i <= 1000; i++) await app.inject(`/w/${i}?q=${i}`)
  const after = await scrape(app)
  t.equal(after.size, before, 'the same series')
  t.equal(after.get('fastify_cache_requests_total{route="w",outcome="miss"}'), 1001)
  t.notOk([...after.keys()].some((k) => /w\/|"\d+"/.test(k)), 'no filled-in value in any label')
})

t.test('metrics options are checked', async (t) => {
  await t.rejects(withCache({ metrics: { prefix: 'bad-prefix' } }), /metrics\.prefix/)
  const { app } = await withCache({ managementRoutes: management })
  t.teardown(() => app.close())
  t.equal((await app.inject({ url: '/cache/metrics', headers: { 'x-token': TOKEN } })).statusCode, 404, 'metrics are off by default')
  t.equal((await app.inject('/cache/metrics')).statusCode, 404)
})

t.test('the metrics route is behind the management access hook', async (t) => {
  const { app } = await withCache({ metrics: {}, managementRoutes: management })
  t.teardown(() => app.close())
  t.equal((await app.inject('/cache/metrics')).statusCode, 401)
  const ok = await app.inject({ url: '/cache/metrics', headers: { 'x-token': TOKEN } })
  t.equal(ok.statusCode, 200)
  t.match(ok.headers['content-type'], /text\/plain/)
})
