import t from 'tap'
import sensible from '@fastify/sensible'
import type { FastifyInstance } from 'fastify'
import { appWith, listen, ORDERS, outcome, type Order } from './helpers/ecosystem.js'
import type { Teardown } from './helpers/redis-server.js'

// @fastify/sensible's error helpers (reply.notFound(), throw httpErrors.x()) send error
// responses, which a route with the default statusCodes ([200]) never stores; its Cache-Control
// helpers are read by the fill like any handler-set header (no-store, private and max-age=0 are
// not stored; the header is replayed on hits), and reply.vary() is honoured like any response Vary.

async function setup (t: Teardown, order: Order) {
  const app = await appWith(t, order, (app: FastifyInstance) => app.register(sensible))
  const calls: Record<string, number> = {}
  const count = (name: string): number => { calls[name] = (calls[name] ?? 0) + 1; return calls[name] }
  const existing = new Set(['1'])

  app.get('/items/:id', { config: { cache: { keyPrefix: 'item' } } }, async (request, reply) => {
    const id = (request.params as { id: string }).id
    count('item')
    if (!existing.has(id)) return reply.notFound(`item ${id} not found`)
    return { id }
  })
  app.get('/thrown/:id', { config: { cache: { keyPrefix: 'thrown' } } }, async (request) => {
    const id = (request.params as { id: string }).id
    count('thrown')
    if (id === '0') throw app.httpErrors.badRequest('id 0 is reserved')
    if (!existing.has(id)) throw app.httpErrors.notFound()
    return { id }
  })
  app.get('/cc/:mode', { config: { cache: { keyPrefix: 'cc_{mode}', resourceIdName: null } } }, async (request, reply) => {
    const mode = (request.params as { mode: string }).mode
    const n = count(`cc:${mode}`)
    if (mode === 'no-store') reply.cacheControl('no-store')
    else if (mode === 'private') reply.cacheControl('private').cacheControl('max-age', 60)
    else if (mode === 'prevent') reply.preventCache()
    else if (mode === 'revalidate') reply.revalidate()
    else if (mode === 'public') reply.cacheControl('public').cacheControl('max-age', '1 minute')
    else if (mode === 'static') reply.staticCache(3600)
    return { mode, n }
  })
  app.get('/greeting/:id', { config: { cache: { keyPrefix: 'greeting' } } }, async (request, reply) => {
    count('greeting')
    reply.vary('accept-language')
    return { hello: request.headers['accept-language'] === 'fr' ? 'bonjour' : 'hello' }
  })
  const get = await listen(app)
  return { get, calls, existing }
}

for (const order of ORDERS) {
  t.test(`reply.notFound() is not cached; the 200 after it is (${order})`, async (t) => {
    const { get, calls, existing } = await setup(t, order)
    const seen = []
    for (let i = 0; i < 3; i++) seen.push(await get('/items/2'))
    t.same(seen.map(outcome), ['404 MISS', '404 MISS', '404 MISS'])
    t.match(seen[2].json(), { statusCode: 404, error: 'Not Found', message: 'item 2 not found' })
    t.equal(calls.item, 3, 'the handler ran for every 404')
    existing.add('2')
    const found = await get('/items/2')
    const hit = await get('/items/2')
    t.same([outcome(found), outcome(hit)], ['200 MISS', '200 HIT'])
    t.same(hit.json(), { id: '2' })
    t.equal(calls.item, 4)
    t.same([outcome(await get('/items/1')), outcome(await get('/items/1'))], ['200 MISS', '200 HIT'])
    t.equal(calls.item, 5)
  })

  t.test(`thrown httpErrors are not cached (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    const seen = []
    for (const id of ['0', '0', '7', '7', '1', '1']) seen.push(outcome(await get(`/thrown/${id}`)))
    t.same(seen, ['400 MISS', '400 MISS', '404 MISS', '404 MISS', '200 MISS', '200 HIT'])
    t.equal(calls.thrown, 5)
    const bad = await get('/thrown/0')
    t.match(bad.json(), { statusCode: 400, message: 'id 0 is reserved' })
  })

  t.test(`sensible's cache-control helpers decide what is stored (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    for (const mode of ['no-store', 'private', 'prevent', 'revalidate']) {
      const first = await get(`/cc/${mode}`)
      const second = await get(`/cc/${mode}`)
      t.same([outcome(first), outcome(second)], ['200 MISS', '200 MISS'], `${mode}: not stored`)
      t.equal(second.json().n, 2, `${mode}: the handler ran again`)
      t.equal(second.headers.get('cache-control'), first.headers.get('cache-control'))
    }
    t.equal((await get('/cc/prevent')).headers.get('pragma'), 'no-cache')
    for (const [mode, cc] of [['public', 'public, max-age=60'], ['static', 'public, max-age=3600, immutable'], ['none', null]] as const) {
      const miss = await get(`/cc/${mode}`)
      const hit = await get(`/cc/${mode}`)
      t.same([outcome(miss), outcome(hit)], ['200 MISS', '200 HIT'], `${mode}: stored`)
      t.equal(calls[`cc:${mode}`], 1)
      t.equal(miss.headers.get('cache-control'), cc)
      t.equal(hit.headers.get('cache-control'), cc, `${mode}: cache-control replayed on the hit`)
      t.same(hit.json(), { mode, n: 1 })
    }
  })

  t.test(`reply.vary() is honoured: no entry crosses accept-language (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    const en = { 'accept-language': 'en' }
    const fr = { 'accept-language': 'fr' }
    const a = await get('/greeting/1', { headers: en })
    const b = await get('/greeting/1', { headers: en })
    t.same([outcome(a), outcome(b)], ['200 MISS', '200 HIT'])
    t.equal(b.headers.get('vary'), 'accept-language')
    const c = await get('/greeting/1', { headers: fr })
    t.equal(outcome(c), '200 MISS', 'a French request never gets the English entry')
    t.same(c.json(), { hello: 'bonjour' })
    const d = await get('/greeting/1', { headers: fr })
    t.equal(outcome(d), '200 HIT')
    t.same(d.json(), { hello: 'bonjour' })
    t.equal(calls.greeting, 2)
  })
}
