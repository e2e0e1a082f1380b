import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { withCache } from './helpers/app.js'
import { threeStores } from './helpers/stores.js'

const backends = threeStores()

for (const [name, options] of backends) {
  t.test(`${name}: 200 concurrent GETs on a cold key run the handler once and all get its response`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    let calls = 0
    app.get('/hot/:id', { config: { cache: { keyPrefix: 'hot' } } }, async (_request, reply) => {
      calls++
      await sleep(100)
      reply.header('x-made', String(calls))
      return { calls, at: Date.now() }
    })
    const responses = await Promise.all(Array.from({ length: 200 }, () => app.inject('/hot/1')))
    t.equal(calls, 1, 'one origin call')
    const bodies = new Set(responses.map((r) => r.body))
    t.equal(bodies.size, 1, 'one body for all')
    t.ok(responses.every((r) => r.statusCode === 200 && r.headers['content-type'] === 'application/json; charset=utf-8'))
    t.equal(responses.filter((r) => r.headers['x-cache'] === 'MISS').length, 1, 'one MISS, the rest served by the fill')
  })

  t.test(`${name}: 50 concurrent GETs of a cold key whose handler throws run it once; all get the error, nothing is stored`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    let calls = 0
    app.get('/err/:id', { config: { cache: { keyPrefix: 'err' } } }, async () => {
      calls++
      await sleep(200)
      if (calls === 1) throw new Error('origin failed')
      return { ok: calls }
    })
    const responses = await Promise.all(Array.from({ length: 50 }, () => app.inject('/err/1')))
    t.equal(calls, 1, 'one handler call for the 50 requests')
    t.equal(responses.filter((r) => r.statusCode === 500).length, 50, 'every request got the error')
    t.same(new Set(responses.map((r) => r.json().message)), new Set(['origin failed']))
    t.ok(responses.every((r) => r.headers['x-cache'] === 'MISS' && r.headers.age === undefined), 'none of them claims to come from the cache')
    t.equal(await app.cache.exists('err:1'), false, 'nothing stored')
    const next = await app.inject('/err/1')
    t.equal(calls, 2, 'the next request after the fill runs the handler afresh')
    t.equal(next.statusCode, 200)
    t.same(next.json(), { ok: 2 })
  })

  t.test(`${name}: a 503 is shared with the waiters too, but a response with set-cookie is not`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    let calls = 0
    app.get('/down/:id', { config: { cache: { keyPrefix: 'down' } } }, async (_request, reply) => {
      calls++
      await sleep(150)
      return reply.code(503).send({ down: true })
    })
    let personal = 0
    app.get('/me/:id', { config: { cache: { keyPrefix: 'me' } } }, async (_request, reply) => {
      const session = ++personal
      await sleep(150)
      return reply.code(500).header('set-cookie', `session=${session}`).send({ session })
    })
    const down = await Promise.all(Array.from({ length: 20 }, () => app.inject('/down/1')))
    t.equal(calls, 1)
    t.ok(down.every((r) => r.statusCode === 503 && r.json().down === true))
    const mine = await Promise.all(Array.from({ length: 5 }, () => app.inject('/me/1')))
    t.equal(personal, 5, 'a response with set-cookie is never handed to another request')
    t.equal(new Set(mine.map((r) => r.headers['set-cookie'])).size, 5)
  })

  t.test(`${name}: a slow GET racing a PATCH never brings pre-PATCH data back (real HTTP)`, async (t) => {
    const { app } = await withCache(await options(t))
    t.teardown(() => app.close())
    const versions = new Map<string, number>()
    const reading = new Map<string, () => void>()
    app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc' } } }, async (request) => {
      const { id } = request.params as { id: string }
      const seen = versions.get(id) ?? 0
      reading.get(id)?.()
      await sleep(100)
      return { version: seen }
    })
    app.patch('/doc/:id', { config: { cache: { keyPrefix: 'doc' } } }, async (request) => {
      const { id } = request.params as { id: string }
      versions.set(id, (versions.get(id) ?? 0) + 1)
      return { version: versions.get(id) }
    })
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    const iterations = name === 'memcached' ? 30 : 100
    let stale = 0
    // Each round on a cold key: the slow GET misses and reads the old version, the PATCH lands
    // while it sleeps, then GETs (which would join the slow fill) and a GET after it finished.
    for (let i = 0; i < iterations; i++) {
      const url = `${base}/doc/${i}`
      const read = new Promise<void>((resolve) => reading.set(String(i), resolve))
      const slow = fetch(url).then((r) => r.json())
      await read
      const patched = await (await fetch(url, { method: 'PATCH' })).json()
      const during = await Promise.all([fetch(url), fetch(url)].map(async (r) => (await r).json()))
      for (const after of during) if (after.version < patched.version) stale++
      t.equal((await slow).version, patched.version - 1, 'the slow GET did read the old version')
      const later = await (await fetch(url)).json()
      if (later.version < patched.version) stale++
    }
    t.equal(stale, 0, `no pre-PATCH response after the PATCH answered, in ${iterations} races`)
  })
}

for (const [name, options] of backends.slice(1)) {
  t.test(`${name}: two instances sharing the store with the lease on make one origin call in total`, async (t) => {
    const shared = await options(t)
    const keyPrefix = `lease-${Math.random().toString(36).slice(2)}`
    let calls = 0
    const instance = async (lease: boolean) => {
      const { app } = await withCache({ ...shared, keyPrefix, lease: lease ? { wait: 3000 } : false })
      t.teardown(() => app.close())
      app.get('/cold/:id', { config: { cache: { keyPrefix: 'cold' } } }, async () => { calls++; await sleep(200); return { calls } })
      return app
    }
    const [a, b] = await Promise.all([instance(true), instance(true)])
    const responses = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).inject('/cold/1')))
    t.equal(calls, 1, 'one origin call across both instances')
    t.equal(new Set(responses.map((r) => r.body)).size, 1)
    t.ok(responses.every((r) => r.statusCode === 200))

    // The same race without the lease: each instance fills for itself.
    calls = 0
    const [c, d] = await Promise.all([instance(false), instance(false)])
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? c : d).inject('/cold/2')))
    t.equal(calls, 2, 'without the lease, one origin call per instance')
  })
}
