import t from 'tap'
import { withCache } from './helpers/app.js'

async function widgetsApp () {
  const { app, logs } = await withCache()
  const widgets = new Map([['1', { id: 1, ownerId: 'ann', name: 'one' }], ['2', { id: 2, ownerId: 'bob', name: 'two' }]])
  let calls = 0
  app.get('/widgets/:widgetId', { config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId' } } },
    async (request) => { calls++; return widgets.get((request.params as { widgetId: string }).widgetId) })
  app.patch('/widgets/:widgetId', {
    config: {
      cache: {
        keyPrefix: 'widget',
        resourceIdName: 'widgetId',
        toInvalidateExtra: { user_widgets: '{ownerId}', widget_count: 'global', owner: 'ownerId' },
        patternToInvalidateExtra: ['user_{ownerId}_widgets:*'],
      },
    },
  }, async (request, reply) => {
    const { widgetId } = request.params as { widgetId: string }
    const body = request.body as { name: string, fail?: number, throw?: boolean }
    if (body.throw) throw new Error('boom')
    if (body.fail) return reply.code(body.fail).send({ error: 'no' })
    const w = widgets.get(widgetId)!
    w.name = body.name
    return w
  })
  return { app, logs, widgets, calls: () => calls }
}

t.test('a 2xx mutation deletes its own key, extra keys (template, field, literal) and pattern matches', async (t) => {
  const { app } = await widgetsApp()
  t.teardown(() => app.close())
  await app.inject('/widgets/1')
  for (const k of ['user_widgets:ann', 'widget_count:global', 'owner:ann', 'user_ann_widgets:page_1', 'user_ann_widgets:page_2', 'user_bob_widgets:page_1', 'user_widgets:bob']) {
    await app.cache.set(k, 1)
  }
  const res = await app.inject({ method: 'PATCH', url: '/widgets/1', payload: { name: 'uno', ownerId: 'ann' } })
  t.equal(res.statusCode, 200)
  const left = []
  for (const k of ['widget:1', 'user_widgets:ann', 'widget_count:global', 'owner:ann', 'user_ann_widgets:page_1', 'user_ann_widgets:page_2', 'user_bob_widgets:page_1', 'user_widgets:bob']) {
    if (await app.cache.exists(k)) left.push(k)
  }
  t.same(left, ['user_bob_widgets:page_1', 'user_widgets:bob'], 'only the other user\'s keys survive')
  const after = await app.inject('/widgets/1')
  t.equal(after.headers['x-cache'], 'MISS')
  t.equal(after.json().name, 'uno')
})

t.test('a non-2xx mutation or a thrown error invalidates nothing', async (t) => {
  const { app } = await widgetsApp()
  t.teardown(() => app.close())
  await app.inject('/widgets/1')
  await app.cache.set('user_ann_widgets:page_1', 1)
  t.equal((await app.inject({ method: 'PATCH', url: '/widgets/1', payload: { name: 'x', ownerId: 'ann', fail: 409 } })).statusCode, 409)
  t.equal((await app.inject({ method: 'PATCH', url: '/widgets/1', payload: { name: 'x', ownerId: 'ann', throw: true } })).statusCode, 500)
  t.equal((await app.inject('/widgets/1')).headers['x-cache'], 'HIT')
  t.equal(await app.cache.exists('user_ann_widgets:page_1'), true)
})

t.test('placeholder values are escaped in patterns: a user-supplied glob matches only itself', async (t) => {
  const { app } = await widgetsApp()
  t.teardown(() => app.close())
  await app.cache.set('user_ann_widgets:page_1', 1)
  await app.cache.set('user_bob_widgets:page_1', 1)
  // '*' is written %2A in a key, as a GET route with `user_{ownerId}_widgets:page_{page}` writes it.
  await app.cache.set('user_%2A_widgets:page_1', 1)
  await app.cache.set('user_*_widgets:page_1', 1)
  await app.inject('/widgets/2')
  const res = await app.inject({ method: 'PATCH', url: '/widgets/2', payload: { name: 'x', ownerId: '*' } })
  t.equal(res.statusCode, 200)
  t.equal(await app.cache.exists('user_ann_widgets:page_1'), true)
  t.equal(await app.cache.exists('user_bob_widgets:page_1'), true)
  t.equal(await app.cache.exists('user_%2A_widgets:page_1'), false, "the key of ownerId '*' is deleted")
  t.equal(await app.cache.exists('user_*_widgets:page_1'), true, 'a key no template builds for a value is not matched either')
})

t.test('a missing placeholder in an extra key skips that key with a warning, the rest still go', async (t) => {
  const { app, logs } = await widgetsApp()
  t.teardown(() => app.close())
  await app.inject('/widgets/1')
  await app.cache.set('widget_count:global', 1)
  const res = await app.inject({ method: 'PATCH', url: '/widgets/1', payload: { name: 'x' } })
  t.equal(res.statusCode, 200)
  t.equal(await app.cache.exists('widget:1'), false)
  t.equal(await app.cache.exists('widget_count:global'), false)
  t.ok(logs.some((l) => /placeholder \{ownerId\} is missing/.test(l.msg)))
})

t.test('read-your-writes over real HTTP: the GET after a PATCH response sees the new data', async (t) => {
  const { app } = await widgetsApp()
  t.teardown(() => app.close())
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  for (let i = 0; i < 20; i++) {
    await fetch(`${base}/widgets/1`)
    const patch = await fetch(`${base}/widgets/1`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: `n${i}`, ownerId: 'ann' }) })
    t.equal(patch.status, 200)
    const get = await fetch(`${base}/widgets/1`)
    t.equal((await get.json()).name, `n${i}`)
  }
})

t.test('POST, PUT and DELETE invalidate too; a route without a resource id deletes its prefix key', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let n = 0
  app.get('/list', { config: { cache: { keyPrefix: 'list' } } }, async () => ({ n }))
  app.post('/list', { config: { cache: { keyPrefix: 'list' } } }, async (_r, reply) => { n++; return reply.code(201).send({ n }) })
  app.put('/list', { config: { cache: { keyPrefix: 'list' } } }, async () => { n++; return { n } })
  app.delete('/list', { config: { cache: { keyPrefix: 'list' } } }, async (_r, reply) => { n++; return reply.code(204).send() })
  for (const method of ['POST', 'PUT', 'DELETE'] as const) {
    await app.inject('/list')
    t.equal((await app.inject('/list')).headers['x-cache'], 'HIT')
    await app.inject({ method, url: '/list' })
    const after = await app.inject('/list')
    t.equal(after.headers['x-cache'], 'MISS', method)
    t.equal(after.json().n, n)
  }
})
