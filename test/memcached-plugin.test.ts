import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import memjs from 'memjs'
import { randomBytes } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import { startCutProxy } from './helpers/cut-proxy.js'
import { withCache, ERROR, WARN, type LogLine } from './helpers/app.js'
import { startMemcached, type MemcachedServer } from './helpers/memcached-server.js'

const OPERATION_TIMEOUT = 100

interface Test { teardown (fn: () => unknown): void }

async function setup (t: Test, extra: Record<string, unknown> = {}): Promise<{ app: FastifyInstance, logs: LogLine[], server: MemcachedServer, calls: Map<string, number> }> {
  const server = await startMemcached()
  t.teardown(() => server.stop())
  const { app, logs } = await withCache({ backend: 'memcached', memcached: { servers: server.address }, operationTimeout: OPERATION_TIMEOUT, ...extra })
  t.teardown(() => app.close())
  const calls = new Map<string, number>()
  const count = (id: string): number => {
    calls.set(id, (calls.get(id) ?? 0) + 1)
    return calls.get(id) as number
  }
  app.get('/widgets/:widgetId', { config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', expiration: 600 } } },
    async (request) => {
      const id = (request.params as { widgetId: string }).widgetId
      return { id, version: count(id) }
    })
  app.patch('/widgets/:widgetId', { config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', patternToInvalidateExtra: ['widget_list:*'] } } },
    async () => ({ ok: true }))
  app.put('/widgets/:widgetId', { config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId' } } },
    async () => ({ ok: true }))
  return { app, logs, server, calls }
}

/** Poll until `url` answers with the wanted x-cache (bounded), e.g. after the circuit closes. */
async function until (app: FastifyInstance, url: string, wanted: string, tries = 50): Promise<string | undefined> {
  let seen: string | undefined
  for (let i = 0; i < tries && seen !== wanted; i++) {
    seen = (await app.inject(url)).headers['x-cache'] as string | undefined
    if (seen !== wanted) await sleep(200)
  }
  return seen
}

t.test('routes are cached in memcached and invalidated by a mutation', async (t) => {
  const { app } = await setup(t)
  const first = await app.inject('/widgets/42')
  t.equal(first.headers['x-cache'], 'MISS')
  const second = await app.inject('/widgets/42')
  t.equal(second.headers['x-cache'], 'HIT')
  t.same(second.json(), { id: '42', version: 1 })
  t.equal((await app.inject({ method: 'PUT', url: '/widgets/42' })).statusCode, 200)
  const third = await app.inject('/widgets/42')
  t.equal(third.headers['x-cache'], 'MISS', 'the PUT deleted the entry')
  t.same(third.json(), { id: '42', version: 2 })
  t.equal((await app.inject('/widgets/42')).headers['x-cache'], 'HIT')
  t.ok(await app.cache.ttl('widget:42') > 590)
})

t.test('long, spaced and unicode ids work as keys and do not collide', async (t) => {
  const { app } = await setup(t)
  // The id comes from the query: Fastify refuses route params longer than 100 characters.
  app.get('/search', { config: { cache: { keyPrefix: 'search', resourceIdName: 'term', resourceIdType: 'string' } } },
    async (request) => ({ term: (request.query as { term: string }).term }))
  const base = `a b\tünï 日本 ${'x'.repeat(300)}`
  for (const term of [base + '1', base + '2', 'with space', 'line\nbreak']) {
    const url = `/search?term=${encodeURIComponent(term)}`
    t.equal((await app.inject(url)).headers['x-cache'], 'MISS', JSON.stringify(term.slice(-12)))
    const hit = await app.inject(url)
    t.equal(hit.headers['x-cache'], 'HIT')
    t.same(hit.json(), { term }, 'its own entry, not a neighbour\'s')
  }
})

t.test('patternToInvalidateExtra logs PatternMatchingNotSupportedError per request; the key delete still happens', async (t) => {
  const { app, logs } = await setup(t)
  for (let round = 1; round <= 2; round++) {
    t.equal((await app.inject('/widgets/7')).headers['x-cache'], 'MISS')
    t.equal((await app.inject('/widgets/7')).headers['x-cache'], 'HIT')
    const patch = await app.inject({ method: 'PATCH', url: '/widgets/7' })
    t.equal(patch.statusCode, 200, 'the mutation answers normally')
    const errors = logs.filter((l) => l.level === ERROR && (l.err as { type?: string } | undefined)?.type === 'PatternMatchingNotSupportedError')
    t.equal(errors.length, round, 'one error-level line per request')
    t.match(errors[round - 1], { msg: /widget_list/ })
  }
  t.equal((await app.inject('/widgets/7')).headers['x-cache'], 'MISS', 'the plain key was deleted')
})

t.test('at start-up, one warning lists the routes whose patterns cannot work on memcached', async (t) => {
  const { app, logs } = await setup(t)
  app.delete('/widgets/:widgetId', { config: { cache: { keyPrefix: 'widget', patternToInvalidateExtra: ['a:*'] } } }, async () => ({ ok: true }))
  await app.ready()
  const warnings = logs.filter((l) => l.level === WARN && /cannot work on Memcached/.test(l.msg))
  t.equal(warnings.length, 1)
  t.same(warnings[0].routes, ['PATCH /widgets/:widgetId', 'DELETE /widgets/:widgetId'], 'the PUT without patterns is not listed')
})

t.test('namespaces clear on memcached without touching other namespaces', async (t) => {
  const { app } = await setup(t)
  await app.cache.set('a', 1, { namespace: 'one' })
  await app.cache.set('a', 2, { namespace: 'two' })
  await app.cache.set('top', 3)
  await app.cache.clear({ namespace: 'one' })
  t.equal(await app.cache.get('a', { namespace: 'one' }), undefined)
  t.equal(await app.cache.get('a', { namespace: 'two' }), 2)
  t.equal(await app.cache.get('top'), 3)
  await app.cache.clear()
  t.equal(await app.cache.get('a', { namespace: 'two' }), undefined)
  t.equal(await app.cache.get('top'), undefined)
  await t.rejects(app.cache.deletePattern('a*'), { name: 'PatternMatchingNotSupportedError' })
})

t.test('SIGSTOP: requests answer 200 BYPASS within the timeout; SIGCONT: HIT again', async (t) => {
  const { app, server } = await setup(t)
  await app.inject('/widgets/1')
  t.equal((await app.inject('/widgets/1')).headers['x-cache'], 'HIT')
  server.pause()
  t.teardown(() => server.resume())
  for (let i = 0; i < 5; i++) {
    const started = Date.now()
    const res = await app.inject('/widgets/1')
    const elapsed = Date.now() - started
    t.equal(res.statusCode, 200)
    t.equal(res.headers['x-cache'], 'BYPASS')
    t.ok(elapsed < OPERATION_TIMEOUT + 400, `answered in ${elapsed} ms`)
  }
  server.resume()
  t.equal(await until(app, '/widgets/1', 'HIT'), 'HIT', 'served from the cache again')
})

// Regression: the failover wrapper replayed the recorded deletePattern on recovery, Memcached
// rejected it every time, and the cache stayed off for good.
t.test('a mutation with a pattern during an outage does not keep the cache off after it', async (t) => {
  const { app, server } = await setup(t)
  await app.inject('/widgets/3')
  server.pause()
  t.teardown(() => server.resume())
  for (let i = 0; i < 4; i++) await app.inject('/widgets/3') // open the circuit
  t.equal((await app.inject({ method: 'PATCH', url: '/widgets/3' })).statusCode, 200)
  server.resume()
  t.equal(await until(app, '/widgets/3', 'MISS'), 'MISS', 'the invalidation was replayed and the cache is back')
  t.equal((await app.inject('/widgets/3')).headers['x-cache'], 'HIT')
})

t.test('kill and restart on the same port: BYPASS while down, cached again after', async (t) => {
  const { app, server } = await setup(t)
  await app.inject('/widgets/9')
  t.equal((await app.inject('/widgets/9')).headers['x-cache'], 'HIT')
  await server.kill()
  const res = await app.inject('/widgets/9')
  t.equal(res.statusCode, 200)
  t.equal(res.headers['x-cache'], 'BYPASS')
  await server.restart()
  t.equal(await until(app, '/widgets/9', 'MISS'), 'MISS', 'a fresh server: a miss')
  t.equal((await app.inject('/widgets/9')).headers['x-cache'], 'HIT')
})

t.test('memcached down at start-up: the memory fallback serves, then memcached takes over', async (t) => {
  const server = await startMemcached()
  t.teardown(() => server.stop())
  await server.kill()
  const { app } = await withCache({ backend: 'memcached', memcached: { servers: server.address }, operationTimeout: OPERATION_TIMEOUT })
  t.teardown(() => app.close())
  app.get('/n/:id', { config: { cache: { keyPrefix: 'n' } } }, async () => ({ ok: true }))
  t.equal(app.cache.stats().fallbackActive, true)
  await app.inject('/n/1')
  t.equal((await app.inject('/n/1')).headers['x-cache'], 'HIT', 'from the fallback')
  await server.restart()
  let active = true
  for (let i = 0; i < 50 && active; i++) {
    await sleep(200)
    active = app.cache.stats().fallbackActive
  }
  t.equal(active, false, 'switched back to memcached')
  t.equal(await app.cache.ping(), true)
  t.equal((await app.inject('/n/2')).headers['x-cache'], 'MISS')
  t.equal((await app.inject('/n/2')).headers['x-cache'], 'HIT')
})

t.test('past 2^31 and 2^32 requests of one client (memjs numbers each one): lookups and fills keep working', async (t) => {
  const server = await startMemcached()
  t.teardown(() => server.stop())
  const client = memjs.Client.create(server.address, { retries: 1, failover: false, logger: { log () {} } })
  t.teardown(() => client.close())
  const numbered = client as unknown as { seq: number }
  const { app, logs } = await withCache({ backend: 'memcached', memcached: { client }, operationTimeout: 500, keyPrefix: 'numbered' })
  t.teardown(() => app.close())
  // A second instance on the same memcached, its requests numbered from 0.
  const other = await withCache({ backend: 'memcached', memcached: { servers: server.address }, operationTimeout: 500, keyPrefix: 'numbered' })
  t.teardown(() => other.app.close())
  let calls = 0
  for (const instance of [app, other.app]) {
    instance.get('/n/:id', { config: { cache: { keyPrefix: 'n:{id}' } } }, async (request) => {
      calls++
      return { id: (request.params as { id: string }).id }
    })
    await instance.ready()
  }
  // Where a long-running process gets after ~2^31 requests, then ~2^32: the request number
  // (the protocol's 32-bit opaque) crosses the signed boundary, then wraps.
  for (const [from, base] of [[0x7ffffff0, 1000], [0xfffffff0, 2000]] as const) {
    numbered.seq = from
    for (let i = 0; i < 8; i++) {
      const url = `/n/${base + i}`
      t.equal((await app.inject(url)).headers['x-cache'], 'MISS', `${url} (request number ${numbered.seq})`)
      const hit = await app.inject(url)
      t.equal(hit.headers['x-cache'], 'HIT', `${url} (request number ${numbered.seq})`)
      t.same(hit.json(), { id: String(base + i) })
      const elsewhere = await other.app.inject(url)
      t.equal(elsewhere.headers['x-cache'], 'HIT', `${url}: the other instance serves the entry`)
      t.same(elsewhere.json(), { id: String(base + i) })
    }
  }
  t.equal(calls, 16, 'one handler call per key, over both instances')
  t.same([...logs, ...other.logs].filter((l) => l.level >= WARN).map((l) => l.msg), [], 'no store failure')
})

t.test('a connection cut in the middle of an answer: the next connection is read from its own first byte', async (t) => {
  const server = await startMemcached()
  t.teardown(() => server.stop())
  const proxy = await startCutProxy(server.host, server.port)
  t.teardown(() => proxy.close())
  const { app, logs } = await withCache({ backend: 'memcached', memcached: { servers: proxy.address }, operationTimeout: 300, keyPrefix: 'cut' })
  t.teardown(() => app.close())
  // Random text: compressed it still takes ~150 KB, many TCP reads.
  // A second instance on the same memcached, not behind the relay.
  const direct = await withCache({ backend: 'memcached', memcached: { servers: server.address }, operationTimeout: 300, keyPrefix: 'cut' })
  t.teardown(() => direct.app.close())
  const big = { text: randomBytes(150_000).toString('base64') }
  await app.cache.set('big', big)
  t.same(await app.cache.get('big'), big, 'read whole through the relay')
  t.same(await direct.app.cache.get('big'), big, 'and by the other instance')

  proxy.cutAfter(20_000)
  t.equal(await app.cache.get('big'), undefined, 'the cut read fails open')
  // The cut request's own deadline resets the connection; afterwards every read must come back.
  let read: unknown
  for (let i = 0; i < 40 && !isDeepStrictEqual(read, big); i++) {
    await sleep(100)
    read = await app.cache.get('big')
  }
  t.same(read, big, 'read whole again on a new connection')
  for (let i = 0; i < 5; i++) {
    await app.cache.set(`small-${i}`, { i })
    t.same(await app.cache.get(`small-${i}`), { i })
    t.same(await direct.app.cache.get(`small-${i}`), { i }, 'what the cut instance writes, the other reads')
    await direct.app.cache.set(`other-${i}`, { i })
    t.same(await app.cache.get(`other-${i}`), { i }, 'and the other way round')
    t.same(await app.cache.get('big'), big)
  }
  t.ok(logs.some((l) => l.level === WARN && /memcached/.test(String(l.msg))), 'the cut read was logged')
})
