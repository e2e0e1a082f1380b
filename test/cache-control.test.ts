import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { responseLifetime } from '../lib/cache-control.js'
import { withCache } from './helpers/app.js'
import { threeStores } from './helpers/stores.js'

const stores = threeStores({ operationTimeout: 2000 })

t.test('a response Cache-Control shortens its route lifetime and windows, never lengthens them', async (t) => {
  const route = { expiration: 60, whileRevalidate: 30, ifError: 0 }
  t.equal(responseLifetime(undefined, route), route, 'no header: the route')
  t.equal(responseLifetime('public, no-cache', route), route, 'no lifetime directive: the route')
  t.same(responseLifetime('max-age=10', route), { expiration: 10, whileRevalidate: 30, ifError: 0 })
  t.same(responseLifetime('max-age=10, s-maxage=20', route), { expiration: 20, whileRevalidate: 30, ifError: 0 }, 's-maxage wins')
  t.same(responseLifetime('S-MAXAGE="5"', route), { expiration: 5, whileRevalidate: 30, ifError: 0 }, 'case-insensitive, quoted')
  t.same(responseLifetime('s-maxage=600', route), route, 'the route expiration is the ceiling')
  t.same(responseLifetime('max-age=0', route).expiration, 0)
  t.same(responseLifetime('stale-while-revalidate=5, stale-if-error=100', route), { expiration: 60, whileRevalidate: 5, ifError: 0 }, 'windows within the route windows')
  t.same(responseLifetime('max-age=abc, s-maxage=-1', route), route, 'malformed values are ignored')
  t.same(responseLifetime(['private', 'max-age=7'], route).expiration, 7)
})

for (const [name, options] of stores) {
  t.test(`${name}: s-maxage and max-age set how long a response is stored, within the route expiration`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    const calls: Record<string, number> = {}
    const route = (path: string, cc: string, expiration = 60): void => {
      app.get(path, { config: { cache: { keyPrefix: path.slice(1), expiration } } }, async (_request, reply) => {
        calls[path] = (calls[path] ?? 0) + 1
        reply.header('cache-control', cc)
        return { path }
      })
    }
    route('/short', 'public, max-age=1')
    route('/shared', 'public, max-age=600, s-maxage=1')
    route('/ceiling', 'public, s-maxage=600', 1)
    route('/long', 'public, s-maxage=600')
    route('/zero', 'max-age=0')
    for (const path of ['/short', '/shared', '/ceiling', '/long', '/zero']) await app.inject(path)
    const hit = await app.inject('/shared')
    t.equal(hit.headers['x-cache'], 'HIT')
    t.equal(hit.headers['cache-control'], 'public, max-age=600, s-maxage=1', 'the stored header is replayed')
    const zero = await app.inject('/zero')
    t.equal(zero.headers['x-cache'], 'MISS', 'max-age=0: not stored')
    t.equal(calls['/zero'], 2)
    await sleep(1300)
    for (const path of ['/short', '/shared', '/ceiling']) {
      t.equal((await app.inject(path)).headers['x-cache'], 'MISS', `${path} expired after 1 s`)
    }
    t.equal((await app.inject('/long')).headers['x-cache'], 'HIT', 's-maxage=600 on a 60 s route: still stored')
  })

  t.test(`${name}: a response's stale-while-revalidate shortens the route window`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    let calls = 0
    app.get('/doc', { config: { cache: { keyPrefix: 'doc', expiration: 1, staleWhileRevalidate: 30 } } }, async (_request, reply) => {
      calls++
      reply.header('cache-control', 'max-age=1, stale-while-revalidate=1')
      return { calls }
    })
    await app.inject('/doc')
    await sleep(1200)
    t.equal((await app.inject('/doc')).headers['x-cache'], 'STALE', 'within its own 1 s window')
    await sleep(300)
    t.equal((await app.inject('/doc')).headers['x-cache'], 'HIT', 'refreshed')
    await sleep(2300)
    const late = await app.inject('/doc')
    t.equal(late.headers['x-cache'], 'MISS', 'past its own window (the route would allow 30 s)')
  })
}

t.test('concurrent requests waiting on a fill whose response has max-age=0 get that response; nothing is stored', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let calls = 0
  app.get('/now', { config: { cache: { keyPrefix: 'now' } } }, async (_request, reply) => {
    calls++
    await sleep(100)
    reply.header('cache-control', 'max-age=0')
    return { calls }
  })
  const burst = await Promise.all(Array.from({ length: 20 }, () => app.inject('/now')))
  t.equal(calls, 1)
  t.ok(burst.every((r) => r.statusCode === 200 && r.json().calls === 1 && r.headers['x-cache'] === 'MISS'))
  t.equal((await app.inject('/now')).json().calls, 2, 'the next request runs the handler')
})

for (const [name, options] of stores.slice(1)) {
  t.test(`${name}: two instances: a lifetime and window set by one instance's response hold on the other`, async (t) => {
    const shared = await options(t)
    const keyPrefix = `cc-${Math.random().toString(36).slice(2)}`
    let calls = 0
    const instance = async () => {
      const { app } = await withCache({ ...shared, keyPrefix })
      t.teardown(() => app.close())
      app.get('/doc', { config: { cache: { keyPrefix: 'doc', expiration: 60, staleWhileRevalidate: 60 } } }, async (_request, reply) => {
        calls++
        reply.header('cache-control', 's-maxage=1, stale-while-revalidate=1')
        return { calls }
      })
      return app
    }
    const [a, b] = await Promise.all([instance(), instance()])
    t.equal((await a.inject('/doc')).headers['x-cache'], 'MISS')
    t.equal((await b.inject('/doc')).headers['x-cache'], 'HIT', 'B serves what A stored')
    await sleep(1200)
    t.equal((await b.inject('/doc')).headers['x-cache'], 'STALE', "B honours the entry's own 1 s lifetime")
    // That STALE answer refreshed the entry (fresh 1 s, stale 1 s more); 2.3 s later both are over.
    await sleep(2300)
    t.equal((await b.inject('/doc')).headers['x-cache'], 'MISS', "past the entry's own 1 s window, a miss (the route would allow 60 s)")
    t.equal(calls, 3, 'the fill, the refresh, the miss')
  })
}
