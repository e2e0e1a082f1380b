import t from 'tap'
import { Readable } from 'node:stream'
import { withCache, WARN } from './helpers/app.js'

t.test('GET: miss runs the handler and stores, the next one is a HIT from the store', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let calls = 0
  app.get('/widgets/:widgetId', { config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', expiration: 600 } } },
    async (request) => { calls++; return { id: (request.params as { widgetId: string }).widgetId, n: calls } })

  const first = await app.inject('/widgets/42')
  t.equal(first.statusCode, 200)
  t.equal(first.headers['x-cache'], 'MISS')
  t.same(first.json(), { id: '42', n: 1 })
  t.match(first.headers.etag, /^"[A-Za-z0-9_-]+"$/, 'a strong etag on the miss')

  const second = await app.inject('/widgets/42')
  t.equal(second.headers['x-cache'], 'HIT')
  t.equal(second.headers.age, '0')
  t.equal(second.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(second.headers.etag, first.headers.etag)
  t.same(second.json(), { id: '42', n: 1 })
  t.equal(calls, 1, 'the handler did not run for the hit')

  t.equal(await app.cache.ttl('widget:42') > 590, true, 'stored under widget:42 with the route expiration')
  t.equal((await app.inject('/widgets/7')).headers['x-cache'], 'MISS', 'another id is another entry')
})

t.test('HEAD is served from the GET entry, and a HEAD miss stores nothing', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let calls = 0
  app.get('/items/:id', { config: { cache: { keyPrefix: 'item' } } }, async () => { calls++; return { hello: 'world' } })

  const headMiss = await app.inject({ method: 'HEAD', url: '/items/1' })
  t.equal(headMiss.headers['x-cache'], 'MISS')
  t.equal(await app.cache.exists('item:1'), false, 'HEAD miss not stored')

  await app.inject('/items/1')
  const head = await app.inject({ method: 'HEAD', url: '/items/1' })
  t.equal(head.statusCode, 200)
  t.equal(head.headers['x-cache'], 'HIT')
  t.equal(head.body, '')
  t.equal(head.headers['content-length'], String(JSON.stringify({ hello: 'world' }).length))
  t.equal(calls, 2)
})

t.test('only statusCodes are stored (default [200])', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let calls = 0
  app.get('/a/:id', { config: { cache: { keyPrefix: 'a' } } }, async (_req, reply) => { calls++; return reply.code(404).send({ missing: true }) })
  app.get('/b/:id', { config: { cache: { keyPrefix: 'b', statusCodes: [200, 404] } } }, async (_req, reply) => { calls++; return reply.code(404).send({ missing: true }) })
  await app.inject('/a/1')
  t.equal((await app.inject('/a/1')).headers['x-cache'], 'MISS', '404 not stored by default')
  await app.inject('/b/1')
  const hit = await app.inject('/b/1')
  t.equal(hit.headers['x-cache'], 'HIT')
  t.equal(hit.statusCode, 404, 'stored status replayed')
  t.equal(calls, 3)
})

t.test('personal or uncacheable responses are never stored', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  const cases: Record<string, (reply: any) => unknown> = {
    cookie: (reply) => reply.header('set-cookie', 'sid=1').send({ ok: 1 }),
    private: (reply) => reply.header('cache-control', 'private, max-age=60').send({ ok: 1 }),
    nostore: (reply) => reply.header('cache-control', 'no-store').send({ ok: 1 }),
    varyall: (reply) => reply.header('vary', '*').send({ ok: 1 }),
    stream: (reply) => reply.type('text/plain').send(Readable.from(['a', 'b'])),
  }
  for (const [name, send] of Object.entries(cases)) {
    app.get(`/${name}`, { config: { cache: { keyPrefix: name } } }, async (_req, reply) => send(reply))
  }
  for (const name of Object.keys(cases)) {
    const first = await app.inject(`/${name}`)
    t.equal(first.statusCode, 200, name)
    t.equal((await app.inject(`/${name}`)).headers['x-cache'], 'MISS', `${name} not stored`)
    t.equal(await app.cache.exists(name), false, `${name} absent from the store`)
  }
})

t.test('only allowlisted headers are stored and replayed', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  app.get('/h', { config: { cache: { keyPrefix: 'h' } } }, async (_req, reply) => {
    reply.header('x-request-secret', 'abc').header('cache-control', 'public, max-age=30').header('content-language', 'en')
    return 'text'
  })
  await app.inject('/h')
  const hit = await app.inject('/h')
  t.equal(hit.headers['x-cache'], 'HIT')
  t.equal(hit.headers['cache-control'], 'public, max-age=30')
  t.equal(hit.headers['content-language'], 'en')
  t.equal(hit.headers['content-type'], 'text/plain; charset=utf-8')
  t.equal(hit.headers['x-request-secret'], undefined)
  t.equal(hit.body, 'text')
})

t.test('ETag: If-None-Match on a hit answers 304 without a body', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  app.get('/e/:id', { config: { cache: { keyPrefix: 'e' } } }, async () => ({ big: 'x'.repeat(100) }))
  const miss = await app.inject('/e/1')
  const etag = miss.headers.etag as string
  const notModified = await app.inject({ url: '/e/1', headers: { 'if-none-match': `"other", ${etag}` } })
  t.equal(notModified.statusCode, 304)
  t.equal(notModified.body, '')
  t.equal(notModified.headers.etag, etag)
  t.equal(notModified.headers['x-cache'], 'HIT')
  const weak = await app.inject({ url: '/e/1', headers: { 'if-none-match': `W/${etag}` } })
  t.equal(weak.statusCode, 304, 'weak comparison for If-None-Match')
  const changed = await app.inject({ url: '/e/1', headers: { 'if-none-match': '"nope"' } })
  t.equal(changed.statusCode, 200)
  t.equal(changed.json().big.length, 100)
})

t.test('the response Vary header keeps variants apart', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let calls = 0
  app.get('/greeting', { config: { cache: { keyPrefix: 'greeting' } } }, async (request, reply) => {
    calls++
    reply.header('vary', 'Accept-Language')
    return { text: request.headers['accept-language'] === 'fr' ? 'bonjour' : 'hello' }
  })
  t.equal((await app.inject({ url: '/greeting', headers: { 'accept-language': 'fr' } })).json().text, 'bonjour')
  const en = await app.inject({ url: '/greeting', headers: { 'accept-language': 'en' } })
  t.equal(en.headers['x-cache'], 'MISS', 'another language is not served the stored one')
  t.equal(en.json().text, 'hello')
  const again = await app.inject({ url: '/greeting', headers: { 'accept-language': 'en' } })
  t.equal(again.headers['x-cache'], 'HIT')
  t.equal(again.json().text, 'hello')
  t.equal(calls, 2)
})

t.test('route vary: authorization-varied entries never cross, and invalidation removes every variant', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let calls = 0
  let version = 1
  app.get('/me/:id', { config: { cache: { keyPrefix: 'me', vary: ['Authorization'] } } },
    async (request) => { calls++; return { user: request.headers.authorization, version } })
  app.patch('/me/:id', { config: { cache: { keyPrefix: 'me' } } }, async () => { version++; return { ok: true } })

  const alice = { authorization: 'Bearer alice' }
  const bob = { authorization: 'Bearer bob' }
  t.equal((await app.inject({ url: '/me/1', headers: alice })).json().user, 'Bearer alice')
  t.equal((await app.inject({ url: '/me/1', headers: bob })).json().user, 'Bearer bob')
  const a2 = await app.inject({ url: '/me/1', headers: alice })
  const b2 = await app.inject({ url: '/me/1', headers: bob })
  t.equal(a2.headers['x-cache'], 'HIT')
  t.equal(a2.json().user, 'Bearer alice')
  t.equal(b2.headers['x-cache'], 'HIT')
  t.equal(b2.json().user, 'Bearer bob')
  t.equal((await app.inject({ url: '/me/1' })).json().user, undefined, 'no authorization is its own variant')
  t.equal(calls, 3)

  t.equal((await app.inject({ method: 'PATCH', url: '/me/1' })).statusCode, 200)
  const a3 = await app.inject({ url: '/me/1', headers: alice })
  const b3 = await app.inject({ url: '/me/1', headers: bob })
  t.equal(a3.headers['x-cache'], 'MISS')
  t.equal(b3.headers['x-cache'], 'MISS')
  t.same([a3.json().version, b3.json().version], [2, 2])
})

t.test('keys: templates, inference, query only when templated, percent-encoded values', async (t) => {
  const { app, logs } = await withCache()
  t.teardown(() => app.close())
  app.get('/users/:username/posts', { config: { cache: { keyPrefix: '{username}_posts:page_{page}', resourceIdName: null } } }, async () => ({ ok: 1 }))
  app.get('/orgs/:orgId/depts/:deptId', { config: { cache: { keyPrefix: 'org_{orgId}_dept' } } }, async () => ({ ok: 1 }))
  app.get('/countries', { config: { cache: { keyPrefix: 'countries' } } }, async () => ['fr'])
  app.get('/users/:username', { config: { cache: { keyPrefix: 'user', resourceIdType: 'string' } } }, async () => ({ ok: 1 }))
  app.get('/fn/:id', { config: { cache: { keyPrefix: (request) => `fn_${(request.query as { v?: string }).v ?? 'none'}` } } }, async () => ({ ok: 1 }))
  app.get('/things/:thingId', { config: { cache: { keyPrefix: 'thing' } } }, async () => ({ ok: 1 }))

  await app.inject('/users/john/posts?page=2&ignored=1')
  t.equal(await app.cache.exists('john_posts:page_2'), true, 'template filled from params then query')
  await app.inject('/orgs/7/depts/9')
  t.equal(await app.cache.exists('org_7_dept:7'), true, 'first *Id param in path order is the id')
  await app.inject('/countries?lang=fr')
  t.equal(await app.cache.exists('countries'), true, 'no id, and the query string is not part of the key')
  await app.inject('/users/a%3Ab')
  t.equal(await app.cache.exists('user:a%3Ab'), true, "':' in a value is percent-encoded so it cannot forge a key segment")
  await app.inject('/fn/1?v=x')
  t.equal(await app.cache.exists('fn_x:1'), true, 'function keyPrefix')

  const missing = await app.inject('/users/john/posts')
  t.equal(missing.statusCode, 200)
  t.equal(missing.headers['x-cache'], 'BYPASS', 'a missing placeholder runs uncached')
  t.ok(logs.some((l) => l.level === WARN && /placeholder \{page\}/.test(l.msg)), 'and logs a warning naming it')

  const notInt = await app.inject('/things/abc')
  t.equal(notInt.headers['x-cache'], 'BYPASS', "an id that is not an integer for 'integer'")
  t.ok(logs.some((l) => l.level === WARN && /not an integer/.test(l.msg)))
  t.equal(app.cache.stats().bypasses, 2)
})

t.test('compression is transparent to readers, for route bodies and provider values', async (t) => {
  const { app } = await withCache({ compression: { enabled: true, threshold: 64 } })
  t.teardown(() => app.close())
  const big = { text: 'lorem ipsum '.repeat(500) }
  app.get('/big', { config: { cache: { keyPrefix: 'big' } } }, async () => big)
  await app.inject('/big')
  const hit = await app.inject('/big')
  t.equal(hit.headers['x-cache'], 'HIT')
  t.same(hit.json(), big)
  t.equal(hit.headers['content-length'], String(JSON.stringify(big).length))
  await app.cache.set('v', big)
  t.same(await app.cache.get('v'), big)
})

t.test('cacheHeader: a custom name, or none', async (t) => {
  for (const cacheHeader of ['x-served-by-cache', false] as const) {
    const { app } = await withCache({ cacheHeader })
    app.get('/c', { config: { cache: { keyPrefix: 'c' } } }, async () => 'c')
    await app.inject('/c')
    const hit = await app.inject('/c')
    t.equal(hit.headers['x-cache'], undefined)
    if (cacheHeader) t.equal(hit.headers[cacheHeader], 'HIT')
    t.equal(hit.headers.age, '0', 'still a hit')
    await app.close()
  }
})

t.test('enabled: false runs every handler and the provider does nothing', async (t) => {
  const { app } = await withCache({ enabled: false })
  t.teardown(() => app.close())
  let calls = 0
  app.get('/d/:id', { config: { cache: { keyPrefix: 'd' } } }, async () => { calls++; return 'd' })
  await app.inject('/d/1')
  const second = await app.inject('/d/1')
  t.equal(second.headers['x-cache'], undefined)
  t.equal(calls, 2)
  await app.cache.set('k', 1)
  t.equal(await app.cache.get('k'), undefined)
  t.equal(await app.cache.getOrSet('k', () => 5), 5)
})

t.test('enabled: false still refuses a bad config.cache at registration', async (t) => {
  const { app } = await withCache({ enabled: false, backend: 'redis', redis: { port: 1 } })
  t.teardown(() => app.close())
  t.throws(() => app.get('/x', { config: { cache: { keyPrefix: 'x', expiration: -1 } } }, async () => 'x'), /expiration: expected an integer >= 1/)
  t.equal(await app.cache.ping(), false, 'no store was created or contacted')
})
