import t from 'tap'
import { Redis } from 'ioredis'
import { freePort, startRedisServer } from './helpers/redis-server.js'
import { withCache, WARN } from './helpers/app.js'

t.test('a store that cannot be reached: handlers run (BYPASS), mutations answer, one warning with context', async (t) => {
  const port = await freePort()
  const { app, logs } = await withCache({ backend: 'redis', redis: { port, host: '127.0.0.1', connectTimeout: 200 }, fallback: 'none', operationTimeout: 100 })
  t.teardown(() => app.close())
  let calls = 0
  app.get('/w/:id', { config: { cache: { keyPrefix: 'w' } } }, async () => { calls++; return { calls } })
  app.patch('/w/:id', { config: { cache: { keyPrefix: 'w', patternToInvalidateExtra: ['w_list:*'] } } }, async () => ({ ok: true }))

  for (let i = 0; i < 5; i++) {
    const res = await app.inject('/w/1')
    t.equal(res.statusCode, 200)
    t.equal(res.headers['x-cache'], 'BYPASS')
  }
  t.equal(calls, 5, 'the handler ran every time')
  t.equal((await app.inject({ method: 'PATCH', url: '/w/1' })).statusCode, 200, 'a mutation answers normally')
  t.equal(await app.cache.get('k'), undefined, 'provider reads are misses')
  await app.cache.set('k', 1)
  t.equal(await app.cache.exists('k'), false)
  t.equal(await app.cache.ping(), false)
  const warnings = logs.filter((l) => l.level === WARN && l.msg.startsWith('Cache backend not available: '))
  t.ok(warnings.length >= 1, 'logged as "Cache backend not available: <error>"')
  t.ok(warnings.length <= 2, `not once per request (${warnings.length} lines for ~10 failures)`)
  t.match(warnings[0], { op: String, backend: 'redis' })
  const s = app.cache.stats()
  t.equal(s.bypasses, 5)
  t.ok(s.errors >= 5)
})

t.test('an entry that cannot be decoded is a miss, is deleted, and logs a warning', async (t) => {
  const server = await startRedisServer(t)
  const keyPrefix = 'corrupt'
  const { app, logs } = await withCache({ backend: 'redis', redis: { url: server.url }, keyPrefix })
  t.teardown(() => app.close())
  const raw = new Redis(server.url)
  t.teardown(() => raw.quit())
  let calls = 0
  app.get('/w/:id', { config: { cache: { keyPrefix: 'w' } } }, async () => { calls++; return { ok: calls } })

  for (const garbage of ['not ours', Buffer.from([0xFC, 1, 1, 0, 0, 0, 99, 123]), Buffer.from([0xFC, 1, 2, 0x7B])]) {
    await raw.set(`${keyPrefix}:w:1`, garbage)
    const res = await app.inject('/w/1')
    t.equal(res.statusCode, 200)
    t.equal(res.headers['x-cache'], 'MISS')
    await raw.set(`${keyPrefix}:v`, garbage)
    t.equal(await app.cache.get('v'), undefined, 'provider get of garbage is a miss')
    await new Promise((resolve) => setTimeout(resolve, 50))
    t.equal(await raw.exists(`${keyPrefix}:v`), 0, 'and the garbage is deleted')
  }
  t.equal(calls, 3)
  t.ok(logs.filter((l) => l.level === WARN && /could not be decoded/.test(l.msg)).length >= 6)
  t.equal((await app.inject('/w/1')).headers['x-cache'], 'HIT', 'the fresh response replaced it')
  t.equal(await raw.get('foreign'), null)
})
