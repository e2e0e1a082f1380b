import t from 'tap'
import cors from '@fastify/cors'
import type { FastifyInstance } from 'fastify'
import { appWith, listen, ORDERS, outcome, type Order } from './helpers/ecosystem.js'
import type { Teardown } from './helpers/redis-server.js'

// @fastify/cors sets its headers in an onRequest hook (and answers preflights there), which runs
// before the cache lookup: a hit carries the same CORS headers as the miss did, and
// a disallowed origin never gets an Access-Control-Allow-Origin, hit or miss. With a list of
// origins cors adds `Vary: Origin`, which the cache honours: an entry is only served to the
// origin it was stored for (one entry per key, so alternating origins keep missing unless the
// route also has `vary: ['origin']`, which keeps one entry per origin).

const A = 'https://a.example'
const B = 'https://b.example'
const EVIL = 'https://evil.example'

async function setup (t: Teardown, order: Order, routeVary?: string[], origin: string | string[] = [A, B]) {
  const app = await appWith(t, order, (app: FastifyInstance) => app.register(cors, { origin, credentials: origin !== '*', exposedHeaders: ['x-cache'] }))
  let calls = 0
  app.get('/w/:id', { config: { cache: { keyPrefix: 'w', vary: routeVary } } }, async (request) => {
    calls++
    return { id: (request.params as { id: string }).id, calls }
  })
  // The same route uncached: what cors alone sends.
  app.get('/plain/:id', async (request) => ({ id: (request.params as { id: string }).id }))
  const get = await listen(app)
  return { get, calls: () => calls }
}
for (const order of ORDERS) {
  t.test(`cors headers are the same on a hit as on the miss (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    const miss = await get('/w/1', { headers: { origin: A } })
    const hit = await get('/w/1', { headers: { origin: A } })
    t.same([outcome(miss), outcome(hit)], ['200 MISS', '200 HIT'])
    t.equal(calls(), 1, 'the handler ran once')
    t.equal(hit.body, miss.body)
    for (const name of ['access-control-allow-origin', 'access-control-allow-credentials', 'access-control-expose-headers', 'vary']) {
      t.equal(hit.headers.get(name), miss.headers.get(name), `${name} on the hit`)
    }
    t.equal(hit.headers.get('access-control-allow-origin'), A)
    t.equal(hit.headers.get('access-control-allow-credentials'), 'true')
    t.equal(hit.headers.get('vary'), 'Origin', 'one Vary: Origin, not repeated by the replayed entry')
  })

  t.test(`a disallowed origin gets no ACAO from a cached entry (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    await get('/w/1', { headers: { origin: A } })
    t.equal((await get('/w/1', { headers: { origin: A } })).cache, 'HIT')
    const evil = await get('/w/1', { headers: { origin: EVIL } })
    t.equal(evil.status, 200)
    t.equal(evil.headers.get('access-control-allow-origin'), null, 'no ACAO for a disallowed origin')
    // cors sends Allow-Credentials whatever the origin; the cached route sends what cors alone does.
    const plain = await get('/plain/1', { headers: { origin: EVIL } })
    for (const name of ['access-control-allow-origin', 'access-control-allow-credentials', 'access-control-expose-headers', 'vary']) {
      t.equal(evil.headers.get(name), plain.headers.get(name), `${name} as without the cache`)
    }
    // Vary: Origin keeps A's entry from answering another origin: the handler runs.
    t.equal(evil.cache, 'MISS')
    t.equal(calls(), 2)
    const again = await get('/w/1', { headers: { origin: EVIL } })
    t.equal(again.cache, 'HIT', 'the disallowed origin now hits its own entry')
    t.equal(again.headers.get('access-control-allow-origin'), null, 'still no ACAO on that hit')
    t.equal(again.headers.get('vary'), 'Origin')
    t.equal(calls(), 2)
  })

  t.test(`Vary: Origin: one entry per key, last origin wins (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    const seen = []
    for (const origin of [A, A, B, B, A, undefined, undefined, A]) {
      const res = await get('/w/1', { headers: origin === undefined ? {} : { origin } })
      seen.push(`${outcome(res)} ${res.headers.get('access-control-allow-origin') ?? '-'}`)
    }
    t.same(seen, [
      `200 MISS ${A}`, `200 HIT ${A}`,
      `200 MISS ${B}`, `200 HIT ${B}`,
      `200 MISS ${A}`,
      '200 MISS -', '200 HIT -',
      `200 MISS ${A}`,
    ])
    t.equal(calls(), 5)
  })

  t.test(`with route vary: ['origin'] each origin keeps its own entry (${order})`, async (t) => {
    const { get, calls } = await setup(t, order, ['origin'])
    const seen = []
    for (const origin of [A, B, A, B, EVIL, EVIL, A]) {
      const res = await get('/w/1', { headers: { origin } })
      seen.push(`${outcome(res)} ${res.headers.get('access-control-allow-origin') ?? '-'}`)
    }
    t.same(seen, [
      `200 MISS ${A}`, `200 MISS ${B}`, `200 HIT ${A}`, `200 HIT ${B}`,
      '200 MISS -', '200 HIT -', `200 HIT ${A}`,
    ])
    t.equal(calls(), 3)
  })

  t.test(`preflight is answered by cors, untouched by the cache (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    await get('/w/1', { headers: { origin: A } })
    for (let i = 0; i < 2; i++) {
      const pre = await get('/w/1', { method: 'OPTIONS', headers: { origin: A, 'access-control-request-method': 'GET' } })
      t.equal(pre.status, 204)
      t.equal(pre.headers.get('access-control-allow-origin'), A)
      t.match(pre.headers.get('access-control-allow-methods'), /GET/)
      t.equal(pre.cache, null, 'no x-cache on a preflight')
      t.equal(pre.body, '')
      const denied = await get('/w/1', { method: 'OPTIONS', headers: { origin: EVIL, 'access-control-request-method': 'GET' } })
      t.equal(denied.headers.get('access-control-allow-origin'), null)
      t.equal(denied.cache, null)
    }
    t.equal(calls(), 1, 'preflights never run the GET handler')
    const hit = await get('/w/1', { headers: { origin: A } })
    t.equal(hit.cache, 'HIT', 'the entry survives the preflights')
  })

  t.test(`origin '*' adds no Vary: one entry serves every origin (${order})`, async (t) => {
    const { get, calls } = await setup(t, order, undefined, '*')
    const seen = []
    for (const origin of [A, B, EVIL, undefined]) {
      const res = await get('/w/1', { headers: origin === undefined ? {} : { origin } })
      seen.push(`${outcome(res)} ${res.headers.get('access-control-allow-origin') ?? '-'} ${res.headers.get('vary') ?? '-'}`)
    }
    t.same(seen, ['200 MISS * -', '200 HIT * -', '200 HIT * -', '200 HIT * -'])
    t.equal(calls(), 1)
  })
}
