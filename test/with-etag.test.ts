import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import etag from '@fastify/etag'
import type { FastifyInstance } from 'fastify'
import { appWith, cacheOptions, listen, ORDERS, outcome, type Order } from './helpers/ecosystem.js'
import { startRedisServer, type Teardown } from './helpers/redis-server.js'

// @fastify/etag hashes the payload in an app-level onSend hook, which runs before the cache's
// route-level onSend (the fill), whatever the registration order: the entry keeps etag's ETag,
// a hit replays it (etag sees the header and does not hash again), and If-None-Match gets a 304
// from a hit (the cache's own check) and from a miss (etag's check; a 304 is not stored).

const sha1 = (body: string): string => `"${createHash('sha1').update(body).digest('base64')}"`

async function setup (t: Teardown, order: Order, backend: 'memory' | 'redis', redisUrl?: string, weak = false) {
  const app = await appWith(t, order, (app: FastifyInstance) => app.register(etag, { weak }), cacheOptions(backend, redisUrl))
  let calls = 0
  app.get('/w/:id', { config: { cache: { keyPrefix: 'w' } } }, async (request) => {
    calls++
    return { id: (request.params as { id: string }).id, name: 'widget', padding: 'x'.repeat(2000) }
  })
  const get = await listen(app)
  return { app, get, calls: () => calls }
}

function suite (t: Test, backend: 'memory' | 'redis', redisUrl?: string): void {
  for (const order of ORDERS) {
    t.test(`a hit carries the miss's ETag, computed by @fastify/etag (${order}, ${backend})`, async (t) => {
      const { get, calls } = await setup(t, order, backend, redisUrl)
      const miss = await get('/w/1')
      const hit = await get('/w/1')
      t.same([outcome(miss), outcome(hit)], ['200 MISS', '200 HIT'])
      t.equal(calls(), 1)
      t.equal(hit.body, miss.body)
      t.equal(miss.headers.get('etag'), sha1(miss.body), "the miss's ETag is @fastify/etag's hash of the body")
      t.equal(hit.headers.get('etag'), miss.headers.get('etag'), 'one ETag, the same on the hit (no second or conflicting value)')
      t.notMatch(hit.headers.get('etag'), /,/, 'a single ETag header value')
    })

    t.test(`If-None-Match gets a 304 on a hit and on a miss (${order}, ${backend})`, async (t) => {
      const { app, get, calls } = await setup(t, order, backend, redisUrl)
      const first = await get('/w/2')
      const tag = first.headers.get('etag') as string
      t.equal(outcome(first), '200 MISS')

      const fromHit = await get('/w/2', { headers: { 'if-none-match': tag } })
      t.equal(outcome(fromHit), '304 HIT')
      t.equal(fromHit.body, '')
      t.equal(fromHit.headers.get('etag'), tag)
      t.equal(calls(), 1, 'a 304 from the cache runs no handler')

      const other = await get('/w/2', { headers: { 'if-none-match': '"something-else"' } })
      t.equal(outcome(other), '200 HIT', 'a non-matching If-None-Match gets the cached body')
      t.equal(other.body, first.body)

      await app.cache.delete('w:2')
      const fromMiss = await get('/w/2', { headers: { 'if-none-match': tag } })
      t.equal(outcome(fromMiss), '304 MISS', "@fastify/etag answers the miss's If-None-Match")
      t.equal(fromMiss.body, '')
      t.equal(fromMiss.headers.get('etag'), tag)
      t.equal(calls(), 2, 'the miss ran the handler')

      // The 304 was not stored: the next plain GET misses and stores the full response.
      const full = await get('/w/2')
      t.equal(outcome(full), '200 MISS')
      t.equal(full.body, first.body)
      t.equal(full.headers.get('etag'), tag)
      t.equal(outcome(await get('/w/2')), '200 HIT')
      t.equal(calls(), 3)
    })

    t.test(`weak ETags: the same W/ tag on the hit; weak comparison for 304 (${order}, ${backend})`, async (t) => {
      const { get, calls } = await setup(t, order, backend, redisUrl, true)
      const miss = await get('/w/3')
      const tag = miss.headers.get('etag') as string
      t.match(tag, /^W\/"/)
      const hit = await get('/w/3')
      t.equal(outcome(hit), '200 HIT')
      t.equal(hit.headers.get('etag'), tag)
      t.equal(outcome(await get('/w/3', { headers: { 'if-none-match': tag } })), '304 HIT')
      t.equal(outcome(await get('/w/3', { headers: { 'if-none-match': tag.slice(2) } })), '304 HIT', 'the strong form of the tag matches weakly')
      t.equal(calls(), 1)
    })
  }
}

t.test('memory store', async (t) => suite(t, 'memory'))

t.test('redis store', async (t) => {
  const server = await startRedisServer(t)
  suite(t, 'redis', server.url)
})
