import t from 'tap'
import helmet from '@fastify/helmet'
import type { FastifyInstance } from 'fastify'
import { appWith, listen, ORDERS, outcome, type Order } from './helpers/ecosystem.js'
import type { Teardown } from './helpers/redis-server.js'

// @fastify/helmet sets its headers in onRequest hooks, before the cache lookup: a
// hit, and a 304 from a hit, carry every security header the miss did. Helmet's headers are not
// stored with the entry (only content headers are), so a change of helmet config applies to hits.

const SECURITY_HEADERS = [
  'content-security-policy',
  'cross-origin-opener-policy',
  'cross-origin-resource-policy',
  'origin-agent-cluster',
  'referrer-policy',
  'strict-transport-security',
  'x-content-type-options',
  'x-dns-prefetch-control',
  'x-download-options',
  'x-frame-options',
  'x-permitted-cross-domain-policies',
  'x-xss-protection',
]

async function setup (t: Teardown, order: Order) {
  const app = await appWith(t, order, (app: FastifyInstance) => app.register(helmet, {
    contentSecurityPolicy: { directives: { defaultSrc: ["'self'"], scriptSrc: ["'self'", 'https://cdn.example'] } },
    referrerPolicy: { policy: 'no-referrer' },
  }))
  let calls = 0
  app.get('/page/:id', { config: { cache: { keyPrefix: 'page' } } }, async (request, reply) => {
    calls++
    reply.type('text/html; charset=utf-8')
    return `<h1>page ${(request.params as { id: string }).id}</h1>`
  })
  // A route that turns one helmet header off for itself (helmet's per-route option).
  app.get('/embed/:id', { helmet: { frameguard: false }, config: { cache: { keyPrefix: 'embed' } } }, async () => {
    calls++
    return { embeddable: true }
  })
  app.get('/plain/:id', async () => 'plain')
  const get = await listen(app)
  return { get, calls: () => calls }
}

for (const order of ORDERS) {
  t.test(`helmet headers are on the hit as on the miss (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    const miss = await get('/page/1')
    const hit = await get('/page/1')
    const plain = await get('/plain/1')
    t.same([outcome(miss), outcome(hit)], ['200 MISS', '200 HIT'])
    t.equal(calls(), 1)
    t.equal(hit.body, '<h1>page 1</h1>')
    t.equal(hit.headers.get('content-type'), 'text/html; charset=utf-8')
    for (const name of SECURITY_HEADERS) {
      t.ok(miss.headers.get(name), `${name} on the miss`)
      t.equal(hit.headers.get(name), miss.headers.get(name), `${name} on the hit`)
      t.equal(hit.headers.get(name), plain.headers.get(name), `${name} as on an uncached route`)
    }
    t.equal(hit.headers.get('content-security-policy')?.includes('https://cdn.example'), true)
    t.equal(hit.headers.get('referrer-policy'), 'no-referrer')
    t.equal(hit.headers.get('x-powered-by'), null)
  })

  t.test(`helmet headers are on a 304 served from a hit (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    const miss = await get('/page/2')
    const etag = miss.headers.get('etag')
    t.ok(etag, 'the cached response has an ETag')
    const notModified = await get('/page/2', { headers: { 'if-none-match': etag as string } })
    t.equal(outcome(notModified), '304 HIT')
    t.equal(notModified.body, '')
    for (const name of SECURITY_HEADERS) {
      t.equal(notModified.headers.get(name), miss.headers.get(name), `${name} on the 304`)
    }
    t.equal(calls(), 1)
  })

  t.test(`a per-route helmet option applies to hits (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    const miss = await get('/embed/1')
    const hit = await get('/embed/1')
    t.same([outcome(miss), outcome(hit)], ['200 MISS', '200 HIT'])
    t.equal(calls(), 1)
    t.equal(miss.headers.get('x-frame-options'), null, 'frameguard off on the miss')
    t.equal(hit.headers.get('x-frame-options'), null, 'and on the hit')
    t.equal(hit.headers.get('x-content-type-options'), 'nosniff', 'the other headers stay on')
    t.equal((await get('/page/9')).headers.get('x-frame-options'), 'SAMEORIGIN', 'other routes keep frameguard')
  })
}
