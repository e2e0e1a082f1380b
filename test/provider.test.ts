import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { CacheError, InvalidRequestError } from '../index.js'
import { withCache } from './helpers/app.js'

t.test('get/set/exists/delete/ttl/expire, and undefined for a miss vs a stored null', async (t) => {
  const { app } = await withCache({ defaultExpiration: 100 })
  t.teardown(() => app.close())
  const c = app.cache
  t.equal(await c.get('missing'), undefined)
  await c.set('nothing', null)
  t.equal(await c.get('nothing'), null, 'a stored null is null, not a miss')
  await c.set('obj', { a: [1, 'two', { three: true }] }, { expiration: 50 })
  t.same(await c.get('obj'), { a: [1, 'two', { three: true }] })
  t.equal(await c.exists('obj'), true)
  t.ok(await c.ttl('obj') > 40 && await c.ttl('obj') <= 50)
  t.ok(await c.ttl('nothing') > 90, 'defaultExpiration applies')
  t.equal(await c.ttl('missing'), -2)
  t.equal(await c.expire('obj', 10), true)
  t.ok(await c.ttl('obj') <= 10)
  t.equal(await c.expire('missing', 10), false)
  t.equal(await c.delete(['obj', 'nothing', 'missing']), 2)
  t.equal(await c.exists('obj'), false)
  t.equal(await c.delete('obj'), 0)
})

t.test('namespaces are one more key segment, cleared as a whole', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  const c = app.cache
  await c.set('k', 'users', { namespace: 'users' })
  await c.set('k', 'posts', { namespace: 'posts' })
  await c.set('k', 'root')
  t.equal(await c.get('k', { namespace: 'users' }), 'users')
  t.equal(await c.get('users:k'), 'users', 'ns:key is the same key')
  await c.clear({ namespace: 'users' })
  t.equal(await c.get('k', { namespace: 'users' }), undefined)
  t.equal(await c.get('k', { namespace: 'posts' }), 'posts')
  t.equal(await c.get('k'), 'root')
  await c.clear()
  t.equal(await c.get('k', { namespace: 'posts' }), undefined)
  t.equal(await c.get('k'), undefined)
  t.ok(await c.get('k', { namespace: 'a:b' }).catch((err) => err) instanceof InvalidRequestError, "a namespace cannot contain ':'")
})

t.test('deletePattern matches with Redis glob semantics, within the namespace when given', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  const c = app.cache
  for (const k of ['user:1', 'user:2', 'user:10', 'users', 'post:1']) await c.set(k, 1)
  await c.set('user:1', 1, { namespace: 'ns' })
  t.equal(await c.deletePattern('user:?'), 2)
  t.equal(await c.exists('user:10'), true)
  t.equal(await c.exists('user:1', { namespace: 'ns' }), true, 'other namespaces untouched')
  t.equal(await c.deletePattern('user:*', { namespace: 'ns' }), 1)
  t.equal(await c.deletePattern('[pu]*'), 3)
})

t.test('getOrSet: a call after the key was deleted does not join a producer that started before', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let version = 1
  let started!: () => void
  const running = new Promise<void>((resolve) => { started = resolve })
  const producer = async () => { const v = version; started(); await sleep(30); return { v } }
  const early = app.cache.getOrSet('item', producer)
  await running // the early producer has read version 1
  version = 2
  await app.cache.delete('item') // the write of version 2 invalidates the key
  const late = app.cache.getOrSet('item', producer)
  t.same(await early, { v: 1 }, 'the call from before the write may see the old value')
  t.same(await late, { v: 2 }, 'the call from after it runs its own producer')
  t.same(await app.cache.get('item'), { v: 2 }, 'and only the new value is stored')
})

t.test('getOrSet: concurrent callers of a missing key share one producer call', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let calls = 0
  const producer = async () => { calls++; await sleep(30); return { made: calls } }
  const results = await Promise.all(Array.from({ length: 50 }, () => app.cache.getOrSet('shared', producer)))
  t.equal(calls, 1)
  t.ok(results.every((r) => r.made === 1))
  t.same(await app.cache.getOrSet('shared', producer), { made: 1 }, 'now cached')
  t.same(await app.cache.getOrSet('shared', producer, { forceRefresh: true }), { made: 2 })
  t.same(await app.cache.get('shared'), { made: 2 })

  const failing = async () => { calls++; throw new Error('db down') }
  await t.rejects(app.cache.getOrSet('bad', failing), /db down/)
  t.equal(await app.cache.exists('bad'), false, 'errors are not cached')
})

t.test('expirations above maxExpiration and bad arguments reject with a CacheError', async (t) => {
  const { app } = await withCache({ maxExpiration: 60, defaultExpiration: 30 })
  t.teardown(() => app.close())
  const rejection = (p: Promise<unknown>) => p.then(() => null, (err) => err)
  t.ok(await rejection(app.cache.set('k', 1, { expiration: 61 })) instanceof CacheError)
  await t.rejects(app.cache.set('k', 1, { expiration: 61 }), /expiration: 61 is above maxExpiration \(60\)/)
  t.ok(await rejection(app.cache.getOrSet('k', () => 1, { expiration: 100 })) instanceof CacheError)
  await app.cache.set('k', 1)
  t.ok(await rejection(app.cache.expire('k', 1000)) instanceof CacheError)
  await t.rejects(app.cache.set('', 1), /key: expected a non-empty string/)
  await t.rejects(app.cache.set('k', undefined), /cannot be stored/)
  await t.rejects(app.cache.get('k', { backendName: 'nope' }), /backendName: 'nope' is not one of the configured backends/)
})

t.test('named backends are separate stores', async (t) => {
  const { app } = await withCache({ backends: { small: { backend: 'memory', memory: { maxEntries: 2 } } } })
  t.teardown(() => app.close())
  await app.cache.set('k', 'default')
  await app.cache.set('k', 'small', { backendName: 'small' })
  t.equal(await app.cache.get('k'), 'default')
  t.equal(await app.cache.get('k', { backendName: 'small' }), 'small')
  app.get('/s/:id', { config: { cache: { keyPrefix: 's', backendName: 'small' } } }, async () => 's')
  await app.inject('/s/1')
  t.equal((await app.inject('/s/1')).headers['x-cache'], 'HIT')
  t.equal(await app.cache.exists('s:1', { backendName: 'small' }), true)
  t.equal(await app.cache.exists('s:1'), false)
})

t.test('statistics: global and per route, hitRate, reset; off when statistics is false', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  app.get('/w/:id', { config: { cache: { keyPrefix: 'w' } } }, async () => 'w')
  app.patch('/w/:id', { config: { cache: { keyPrefix: 'w' } } }, async () => 'ok')
  await app.inject('/w/1')
  await app.inject('/w/1')
  await app.inject('/w/1')
  await app.inject({ method: 'PATCH', url: '/w/1' })
  await app.cache.get('nope')
  const s = app.cache.stats()
  t.match(s, { backend: 'memory', fallbackActive: false, hits: 2, misses: 2, sets: 1, deletes: 1, errors: 0, bypasses: 0 })
  t.equal(s.hitRate, 0.5)
  t.same(s.routes, { w: { hits: 2, misses: 1, stale: 0 } })
  app.cache.resetStats()
  t.match(app.cache.stats(), { hits: 0, misses: 0, hitRate: 0, sets: 0, routes: { w: { hits: 0, misses: 0 } } })

  const off = await withCache({ statistics: false })
  t.teardown(() => off.app.close())
  await off.app.cache.get('x')
  t.equal(off.app.cache.stats().misses, 0)
})
