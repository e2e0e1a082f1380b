import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { withCache } from './helpers/app.js'
import { threeStores } from './helpers/stores.js'
import { waitFor } from './helpers/redis-server.js'

const stores = threeStores({ operationTimeout: 2000 })

for (const [name, options] of stores) {
  t.test(`${name}: within staleWhileRevalidate, 100 requests get the expired entry (STALE, true age) and one refresh runs`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    let version = 1
    let calls = 0
    app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc', expiration: 1, staleWhileRevalidate: 30 } } }, async () => {
      calls++
      await sleep(50)
      return { version }
    })
    t.equal((await app.inject('/doc/1')).headers['x-cache'], 'MISS')
    version = 2
    await sleep(1100)
    const burst = await Promise.all(Array.from({ length: 100 }, () => app.inject('/doc/1')))
    t.ok(burst.every((r) => r.headers['x-cache'] === 'STALE' && r.json().version === 1), 'all STALE with the old data')
    t.ok(burst.every((r) => Number(r.headers.age) >= 1), 'age is above the expiration')
    t.equal(app.cache.stats().stale, 100, 'stale serves are counted')
    t.equal(app.cache.stats().routes.doc.stale, 100)
    await waitFor('the refresh', async () => (await app.inject('/doc/1')).headers['x-cache'] === 'HIT', 5000)
    t.equal(calls, 2, 'one handler call for the fill, one for the refresh')
    const after = await app.inject('/doc/1')
    t.equal(after.headers['x-cache'], 'HIT')
    t.same(after.json(), { version: 2 })
  })

  t.test(`${name}: within staleIfError, a thrown error or a 503 is answered from the expired entry; outside it, the error`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    let mode: 'ok' | 'throw' | '503' = 'ok'
    app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc', expiration: 1, staleIfError: 2 } } }, async (_request, reply) => {
      if (mode === 'throw') throw new Error('origin down')
      if (mode === '503') return reply.code(503).send({ down: true })
      return { version: 1 }
    })
    await app.inject('/doc/1')
    await sleep(1100)
    mode = 'throw'
    const thrown = await app.inject('/doc/1')
    t.equal(thrown.statusCode, 200)
    t.equal(thrown.headers['x-cache'], 'STALE')
    t.same(thrown.json(), { version: 1 })
    mode = '503'
    const unavailable = await app.inject('/doc/1')
    t.equal(unavailable.statusCode, 200)
    t.equal(unavailable.headers['x-cache'], 'STALE')
    await sleep(2200)
    const late = await app.inject('/doc/1')
    t.equal(late.statusCode, 503, 'outside the window the error goes to the client')
  })

  t.test(`${name}: a handler slower than staleTimeout within staleIfError is answered from the expired entry; its late response is stored`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    let version = 1
    let delay = 0
    app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc', expiration: 1, staleIfError: 30, staleTimeout: 150 } } }, async () => {
      const seen = version
      await sleep(delay)
      return { version: seen }
    })
    await app.inject('/doc/1')
    await sleep(1100)
    version = 2
    delay = 1000
    const started = Date.now()
    const slow = await app.inject('/doc/1')
    t.equal(slow.headers['x-cache'], 'STALE')
    t.same(slow.json(), { version: 1 })
    t.ok(Date.now() - started < 900, `answered before the handler finished (${Date.now() - started} ms)`)
    await waitFor('the late response stored', async () => (await app.inject('/doc/1')).headers['x-cache'] === 'HIT', 5000)
    t.same((await app.inject('/doc/1')).json(), { version: 2 }, 'the late response was stored as a refresh')
    await sleep(1100)
    delay = 0
    version = 3
    const quick = await app.inject('/doc/1')
    t.equal(quick.headers['x-cache'], 'MISS', 'a handler within staleTimeout answers itself')
    t.same(quick.json(), { version: 3 })
  })

  t.test(`${name}: a PATCH within the stale windows makes the next GET a MISS with the new data, never STALE`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    let version = 1
    app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc', expiration: 1, staleWhileRevalidate: 30, staleIfError: 30 } } }, async () => ({ version }))
    app.patch('/doc/:id', { config: { cache: { keyPrefix: 'doc' } } }, async () => { version++; return { version } })
    await app.inject('/doc/1')
    await sleep(1100)
    await app.inject({ method: 'PATCH', url: '/doc/1' })
    const next = await app.inject('/doc/1')
    t.equal(next.headers['x-cache'], 'MISS')
    t.same(next.json(), { version: 2 })
  })

  t.test(`${name}: a refresh that an invalidation overtakes stores nothing`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    let version = 1
    let delay = 0
    app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc', expiration: 1, staleWhileRevalidate: 30 } } }, async () => {
      const seen = version
      await sleep(delay)
      return { version: seen }
    })
    app.patch('/doc/:id', { config: { cache: { keyPrefix: 'doc' } } }, async () => { version++; return { version } })
    await app.inject('/doc/1')
    await sleep(1100)
    version = 2
    delay = 400
    t.equal((await app.inject('/doc/1')).headers['x-cache'], 'STALE', 'the refresh starts; it reads version 2')
    await sleep(100)
    await app.inject({ method: 'PATCH', url: '/doc/1' })
    delay = 0
    await sleep(600)
    const next = await app.inject('/doc/1')
    t.equal(next.headers['x-cache'], 'MISS', 'the overtaken refresh stored nothing')
    t.same(next.json(), { version: 3 })
  })

  t.test(`${name}: a refresh behind an onRequest auth hook runs with the original request's headers and client address`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization !== 'Bearer good') return reply.code(401).send({ error: 'unauthorized' })
    })
    let version = 1
    const seen: Array<{ auth?: string, ip: string, tenant?: string, conditional?: string }> = []
    app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc', expiration: 1, staleWhileRevalidate: 30 } } }, async (request) => {
      seen.push({ auth: request.headers.authorization, ip: request.ip, tenant: request.headers['x-tenant'] as string, conditional: request.headers['if-none-match'] })
      return { version }
    })
    const asClient = { remoteAddress: '10.1.2.3', headers: { authorization: 'Bearer good', 'x-tenant': 't1' } }
    t.equal((await app.inject({ url: '/doc/1', ...asClient })).headers['x-cache'], 'MISS')
    version = 2
    await sleep(1100)
    t.equal((await app.inject('/doc/1')).statusCode, 401, 'the hook still answers a client without credentials in the stale window')
    const stale = await app.inject({ url: '/doc/1', ...asClient, headers: { ...asClient.headers, 'if-none-match': '"nope"' } })
    t.equal(stale.headers['x-cache'], 'STALE')
    await waitFor('the refresh', async () => (await app.inject({ url: '/doc/1', ...asClient })).headers['x-cache'] === 'HIT', 5000)
    t.equal(seen.length, 2, 'the refresh passed the auth hook and ran the handler')
    t.same(seen[1], { auth: 'Bearer good', ip: '10.1.2.3', tenant: 't1', conditional: undefined }, 'same credentials, headers and client address; no conditional header')
    t.same((await app.inject({ url: '/doc/1', ...asClient })).json(), { version: 2 })
  })
}

t.test('stale options are for GET routes', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  t.throws(() => app.patch('/x', { config: { cache: { keyPrefix: 'x', staleWhileRevalidate: 5 } } }, async () => ({})), /staleWhileRevalidate, staleIfError and staleTimeout are for GET routes/)
  t.throws(() => app.get('/y', { config: { cache: { keyPrefix: 'y', staleIfError: -1 } } }, async () => ({})), /staleIfError: expected an integer >= 0/)
  t.throws(() => app.get('/z', { config: { cache: { keyPrefix: 'z', staleTimeout: 100 } } }, async () => ({})), /staleTimeout: needs staleIfError/)
})

for (const [name, options] of stores.slice(1)) {
  t.test(`${name}: two instances sharing the store run one refresh in total for a burst in the stale window`, async (t) => {
    const shared = await options(t)
    const keyPrefix = `stale-${Math.random().toString(36).slice(2)}`
    let version = 1
    let calls = 0
    const instance = async () => {
      const { app } = await withCache({ ...shared, keyPrefix })
      t.teardown(() => app.close())
      app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc', expiration: 1, staleWhileRevalidate: 30 } } }, async () => {
        calls++
        await sleep(300)
        return { version }
      })
      return app
    }
    const [a, b] = await Promise.all([instance(), instance()])
    await a.inject('/doc/1')
    t.equal((await b.inject('/doc/1')).headers['x-cache'], 'HIT', 'B reads what A stored')
    version = 2
    calls = 0
    await sleep(1100)
    const burst = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? a : b).inject('/doc/1')))
    t.ok(burst.every((r) => r.headers['x-cache'] === 'STALE' && r.json().version === 1), 'all STALE on both instances')
    await waitFor('the refresh', async () => (await b.inject('/doc/1')).headers['x-cache'] === 'HIT' && (await a.inject('/doc/1')).headers['x-cache'] === 'HIT', 5000)
    t.equal(calls, 1, 'one refresh across both instances')
    t.same((await a.inject('/doc/1')).json(), { version: 2 })
  })
}
