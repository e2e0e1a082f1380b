import t from 'tap'
import swagger from '@fastify/swagger'
import Fastify, { type FastifyInstance } from 'fastify'
import { appWith, listen, ORDERS, outcome, type Order } from './helpers/ecosystem.js'
import type { Teardown } from './helpers/redis-server.js'

// @fastify/swagger collects routes in an onRoute hook, as this plugin does; the cache only adds
// lifecycle hooks to a route, never touches its schema, so the OpenAPI document is the same with
// or without the cache. A cached route's response schema still applies: the miss is serialized
// by it and the hit replays those exact bytes.

const widgetSchema = {
  tags: ['widgets'],
  summary: 'One widget',
  params: { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] },
  querystring: { type: 'object', properties: { fields: { type: 'string', enum: ['short', 'full'] } }, additionalProperties: false },
  headers: { type: 'object', properties: { 'x-api-version': { type: 'string', pattern: '^[0-9]+$' } } },
  response: {
    200: {
      type: 'object',
      properties: { id: { type: 'integer' }, name: { type: 'string' }, price: { type: 'number' }, tags: { type: 'array', items: { type: 'string' } } },
      required: ['id', 'name'],
    },
    404: { type: 'object', properties: { message: { type: 'string' } } },
  },
} as const

const listSchema = {
  tags: ['widgets'],
  querystring: { type: 'object', properties: { page: { type: 'integer', minimum: 1, default: 1 } } },
  response: { 200: { type: 'array', items: { type: 'object', properties: { id: { type: 'integer' } } } } },
} as const

function routes (app: FastifyInstance, calls: { n: number }): void {
  app.get('/widgets/:id', { schema: widgetSchema, config: { cache: { keyPrefix: 'widget', expiration: 600 } } }, async (request, reply) => {
    calls.n++
    const { id } = request.params as { id: number }
    if (id === 404) return reply.code(404).send({ message: 'no such widget', internal: 'hidden' })
    // `secret` is not in the response schema: it never reaches a client, miss or hit.
    return { id, name: `widget ${id}`, price: '9.5', tags: ['a', 'b'], secret: 'do not leak' }
  })
  app.get('/widgets', { schema: listSchema, config: { cache: { keyPrefix: 'widgets:page_{page}', resourceIdName: null } } }, async (request) => {
    calls.n++
    const { page } = request.query as { page: number }
    return [{ id: page * 10, extra: true }, { id: page * 10 + 1 }]
  })
  app.post('/widgets/:id', { schema: { tags: ['widgets'], params: widgetSchema.params, body: { type: 'object', properties: { name: { type: 'string' } } } }, config: { cache: { keyPrefix: 'widget' } } }, async () => ({ ok: true }))
}

const openapi = { openapi: { info: { title: 'widgets', version: '1.0.0' } } }

async function setup (t: Teardown, order: Order) {
  const calls = { n: 0 }
  const app = await appWith(t, order, (app: FastifyInstance) => app.register(swagger, openapi))
  routes(app, calls)
  const get = await listen(app)
  return { app, get, calls }
}

for (const order of ORDERS) {
  t.test(`the OpenAPI document is the same as without the cache (${order})`, async (t) => {
    const { app } = await setup(t, order)
    const bare = Fastify()
    t.teardown(() => bare.close())
    await bare.register(swagger, openapi)
    routes(bare, { n: 0 })
    await bare.ready()
    const doc = app.swagger() as any
    t.same(doc, bare.swagger(), 'identical document')
    t.same(Object.keys(doc.paths).sort(), ['/widgets', '/widgets/{id}'])
    const get = doc.paths['/widgets/{id}'].get
    t.equal(get.summary, 'One widget')
    t.same(get.parameters.map((p: { in: string, name: string }) => `${p.in}:${p.name}`).sort(), ['header:x-api-version', 'path:id', 'query:fields'])
    t.same(Object.keys(get.responses).sort(), ['200', '404'])
    t.same(get.responses['200'].content['application/json'].schema.required, ['id', 'name'])
    t.ok(doc.paths['/widgets/{id}'].post, 'the invalidating POST is listed too')
    t.notMatch(JSON.stringify(doc), /x-cache|cacheLookup|cacheFill/, 'nothing of the cache leaks into the document')
  })

  t.test(`response schemas serialize the miss, and the hit replays it (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    const miss = await get('/widgets/3')
    const hit = await get('/widgets/3')
    t.same([outcome(miss), outcome(hit)], ['200 MISS', '200 HIT'])
    t.equal(calls.n, 1)
    t.same(miss.json(), { id: 3, name: 'widget 3', price: 9.5, tags: ['a', 'b'] }, 'serialized by the schema: coerced, secret dropped')
    t.equal(hit.body, miss.body, 'byte for byte')
    t.equal(hit.headers.get('content-type'), 'application/json; charset=utf-8')
    t.equal(hit.headers.get('content-length'), String(Buffer.byteLength(miss.body)))

    const list1 = await get('/widgets?page=2')
    const list2 = await get('/widgets?page=2')
    t.same([outcome(list1), outcome(list2)], ['200 MISS', '200 HIT'])
    t.same(list2.json(), [{ id: 20 }, { id: 21 }])
    // The key is built after validation: the schema default fills {page}, so /widgets is page 1.
    const noPage = await get('/widgets')
    t.equal(noPage.cache, 'MISS')
    t.same(noPage.json(), [{ id: 10 }, { id: 11 }])
    const page1 = await get('/widgets?page=1')
    t.equal(outcome(page1), '200 HIT', 'the same entry as /widgets')
    t.same(page1.json(), [{ id: 10 }, { id: 11 }])
    t.equal(outcome(await get('/widgets?page=2')), '200 HIT')

    const before = calls.n
    const gone = await get('/widgets/404')
    t.equal(outcome(gone), '404 MISS')
    t.same(gone.json(), { message: 'no such widget' }, 'the 404 schema applies too')
    t.equal(outcome(await get('/widgets/404')), '404 MISS', 'a 404 is not stored')
    t.equal(calls.n, before + 2)
  })

  t.test(`schema validation applies to hits as to misses (${order})`, async (t) => {
    const { get, calls } = await setup(t, order)
    t.equal(outcome(await get('/widgets/5')), '200 MISS')
    t.equal(outcome(await get('/widgets/5')), '200 HIT')
    t.equal(calls.n, 1)
    // The query string and headers are not part of the key: an invalid one must still be a 400,
    // as it is on an uncached route, never the cached 200.
    const badQuery = await get('/widgets/5?fields=everything')
    t.equal(badQuery.status, 400, 'querystring enum violated: 400 on a cached key')
    t.match(badQuery.body, /querystring/)
    const badHeader = await get('/widgets/5', { headers: { 'x-api-version': 'latest' } })
    t.equal(badHeader.status, 400, 'header pattern violated: 400 on a cached key')
    t.equal(outcome(await get('/widgets/5?fields=full')), '200 HIT', 'a valid query still hits')
    t.equal(calls.n, 1)
  })
}
