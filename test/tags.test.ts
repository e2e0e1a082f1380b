import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Cluster } from 'ioredis'
import { CacheConfigurationError, InvalidRequestError, type ServerCacheOptions } from '../index.js'
import { withCache, WARN, type LogLine } from './helpers/app.js'
import { startMemcached } from './helpers/memcached-server.js'
import { startRedisCluster, startRedisServer } from './helpers/redis-server.js'

/**
 * Tags and namespaces (API.md: `config.cache.tags`, `invalidateTags`, `invalidateNamespaces`, the
 * provider's `set`/`getOrSet` with `{ tags }` and `invalidateTags`, `DELETE {prefix}/tags/:tag`),
 * on every store: memory, one Redis, a 3-master Redis Cluster, two Memcached servers.
 *
 * Every app has its own keyPrefix (withCache), so the subtests of all stores run side by side on
 * the shared servers. A generous operationTimeout: a provider read that times out resolves
 * `undefined` (fail-open), which would look like "gone"; every per-store subtest also asserts that
 * nothing was logged at warn level, so a fail-open can never pass for an invalidation.
 */

interface StoreCase {
  name: string
  /** Plugin options for one app on this store (started servers are torn down by the parent test). */
  options: ServerCacheOptions
}

const BASE: ServerCacheOptions = { operationTimeout: 2000 }

/** The user values that must be matched literally, and values a pattern or an encoding would confuse them with. */
const SPECIALS = ['a*b', 'x:y', '{z}', 'a b', 'é🔑', 'L'.repeat(300)]
const DECOYS = ['a', 'b', 'ab', 'aXb', 'a?b', 'a**b', '*', 'x', 'y', 'x%3Ay', 'x:', ':y', 'z', '{z', 'z}', 'a  b', 'a_b', 'é', '🔑', 'e🔑', 'L'.repeat(299), 'L'.repeat(301)]
const VALUES = [...SPECIALS, ...DECOYS]

const enc = encodeURIComponent

/** A value for a test message (the 300-character ones shortened). */
const label = (value: string): string => JSON.stringify(value.length > 24 ? `${value.slice(0, 12)}…(${value.length})` : value)

function warnings (logs: LogLine[]): string[] {
  return logs.filter((line) => line.level >= WARN).map((line) => line.msg)
}

function param (request: FastifyRequest, name: string): string {
  return (request.params as Record<string, string>)[name]
}

/** Keys of `keys` that `exists` still finds (route entries as well as provider values). */
async function existing (app: FastifyInstance, keys: string[]): Promise<string[]> {
  const found = await Promise.all(keys.map((key) => app.cache.exists(key)))
  return keys.filter((_, i) => found[i])
}

/** Keys of `keys` that `get` still finds (in batches, so 10,000 keys do not open 10,000 requests at once). */
async function present (app: FastifyInstance, keys: string[], batch = 500): Promise<string[]> {
  const found: string[] = []
  for (let i = 0; i < keys.length; i += batch) {
    const slice = keys.slice(i, i + batch)
    const values = await Promise.all(slice.map((key) => app.cache.get(key)))
    slice.forEach((key, j) => { if (values[j] !== undefined) found.push(key) })
  }
  return found
}

interface Answer { status: number, cache: string | undefined, body: any }

async function get (app: FastifyInstance, url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await app.inject({ url, headers })
  return { status: res.statusCode, cache: res.headers['x-cache'] as string | undefined, body: res.statusCode === 200 ? res.json() : res.body }
}

/** x-cache of each url, in order. */
async function outcomes (app: FastifyInstance, urls: string[]): Promise<Array<string | undefined>> {
  const out: Array<string | undefined> = []
  for (const url of urls) out.push((await get(app, url)).cache)
  return out
}

// ---------------------------------------------------------------------------------------------
// Per-store behaviour
// ---------------------------------------------------------------------------------------------

async function routeTags (t: Test, store: StoreCase): Promise<void> {
  const { app, logs } = await withCache({ ...BASE, ...store.options })
  t.teardown(() => app.close())
  // widget id → owner and name; owner 7 has widgets 1 and 2, owner 8 has widget 3.
  const widgets = new Map([['1', { ownerId: '7', name: 'one' }], ['2', { ownerId: '7', name: 'two' }], ['3', { ownerId: '8', name: 'three' }]])
  const calls = new Map<string, number>()
  const count = (request: FastifyRequest): void => { calls.set(request.url, (calls.get(request.url) ?? 0) + 1) }
  const widget = (id: string) => ({ id, ...widgets.get(id)! })

  // Placeholder from the params.
  app.get('/owners/:ownerId/widgets/:widgetId', {
    config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', tags: ['owner:{ownerId}', 'widgets'] } },
  }, async (request) => { count(request); return widget(param(request, 'widgetId')) })
  // Placeholder from the query (not part of the key).
  app.get('/widgets/:widgetId/details', {
    config: { cache: { keyPrefix: 'details', resourceIdName: 'widgetId', tags: ['owner:{ownerId}'] } },
  }, async (request) => { count(request); return { details: widget(param(request, 'widgetId')) } })
  app.get('/owners/:ownerId/summary', {
    config: { cache: { keyPrefix: 'summary', resourceIdName: 'ownerId', tags: ['owner:{ownerId}'] } },
  }, async (request) => {
    count(request)
    const ownerId = param(request, 'ownerId')
    return { names: [...widgets.values()].filter((w) => w.ownerId === ownerId).map((w) => w.name) }
  })
  // Placeholder from the body. The route's own key (`patch_log`) is nothing the GETs store.
  app.patch('/widgets/:widgetId', {
    config: { cache: { keyPrefix: 'patch_log', resourceIdName: null, invalidateTags: ['owner:{ownerId}'] } },
  }, async (request, reply) => {
    const body = request.body as { ownerId: string, name: string, fail?: number }
    if (body.fail !== undefined) return reply.code(body.fail).send({ error: 'no' })
    widgets.get(param(request, 'widgetId'))!.name = body.name
    return { ok: true }
  })
  // A literal tag template.
  app.post('/owners/:ownerId/widgets', {
    config: { cache: { keyPrefix: 'creations', resourceIdName: null, invalidateTags: ['widgets'] } },
  }, async (request, reply) => {
    const id = String(widgets.size + 1)
    widgets.set(id, { ownerId: param(request, 'ownerId'), name: `w${id}` })
    return reply.code(201).send({ id })
  })

  const owner7 = ['/owners/7/widgets/1', '/owners/7/widgets/2', '/widgets/1/details?ownerId=7', '/owners/7/summary']
  const owner8 = ['/owners/8/widgets/3', '/widgets/3/details?ownerId=8', '/owners/8/summary']
  t.same(await outcomes(app, [...owner7, ...owner8]), Array(7).fill('MISS'), 'first GETs miss')
  t.same(await outcomes(app, [...owner7, ...owner8]), Array(7).fill('HIT'), 'second GETs hit')
  await app.cache.set('owner7-provider', { p: 7 }, { tags: ['owner:7'] })
  await app.cache.set('owner8-provider', { p: 8 }, { tags: ['owner:8'] })

  const refused = await app.inject({ method: 'PATCH', url: '/widgets/1', payload: { ownerId: '7', name: 'nope', fail: 409 } })
  t.equal(refused.statusCode, 409)
  t.same(await outcomes(app, [...owner7, ...owner8]), Array(7).fill('HIT'), 'a non-2xx mutation invalidates no tag')
  t.same(await app.cache.get('owner7-provider'), { p: 7 })

  const patched = await app.inject({ method: 'PATCH', url: '/widgets/1', payload: { ownerId: '7', name: 'uno' } })
  t.equal(patched.statusCode, 200)
  const before = new Map(calls)
  const after7 = await Promise.all(owner7.map((url) => get(app, url)))
  t.same(after7.map((a) => a.cache), Array(4).fill('MISS'), "every entry tagged owner:7 is gone after the PATCH's response")
  t.equal(after7[0].body.name, 'uno', 'the widget GET sees the new data')
  t.equal(after7[2].body.details.name, 'uno', 'the details GET (tag from the query) sees the new data')
  t.same(after7[3].body.names, ['uno', 'two'], 'the summary sees the new data')
  t.same(owner7.map((url) => (calls.get(url) ?? 0) - (before.get(url) ?? 0)), [1, 1, 1, 1], 'the handler ran again for each')
  t.equal(await app.cache.get('owner7-provider'), undefined, 'a provider value tagged owner:7 is gone too')
  t.same(await outcomes(app, owner8), Array(3).fill('HIT'), "owner 8's entries are untouched")
  t.same(await app.cache.get('owner8-provider'), { p: 8 }, "owner 8's provider value is untouched")
  t.same(await outcomes(app, owner7), Array(4).fill('HIT'), 'the new responses are stored again')

  // The literal tag `widgets` is on the widget GETs only.
  t.equal((await app.inject({ method: 'POST', url: '/owners/8/widgets' })).statusCode, 201)
  t.same(await outcomes(app, ['/owners/7/widgets/1', '/owners/7/widgets/2', '/owners/8/widgets/3']), ['MISS', 'MISS', 'MISS'], 'POST with invalidateTags: [widgets] removes every widget entry')
  t.same(await outcomes(app, ['/widgets/1/details?ownerId=7', '/owners/7/summary', '/widgets/3/details?ownerId=8', '/owners/8/summary']),
    ['HIT', 'HIT', 'HIT', 'HIT'], 'entries without the tag stay')

  // Provider invalidateTags reaches route entries.
  t.equal(await app.cache.invalidateTags('owner:8'), undefined, 'invalidateTags resolves void')
  t.same(await outcomes(app, owner8), Array(3).fill('MISS'), 'provider invalidateTags(owner:8) removes the route entries tagged owner:8')
  t.same(await outcomes(app, owner7), Array(4).fill('HIT'))
  t.same(warnings(logs), [], 'no warnings (nothing ran uncached)')
}

async function varyVariants (t: Test, store: StoreCase): Promise<void> {
  const { app, logs } = await withCache({ ...BASE, ...store.options })
  t.teardown(() => app.close())
  let version = 1
  app.get('/varied/:id', { config: { cache: { keyPrefix: 'varied', tags: ['varied'], vary: ['accept-language'] } } },
    async (request) => ({ version, lang: request.headers['accept-language'] }))

  const langs = ['en', 'fr', 'de']
  for (const lang of langs) t.equal((await get(app, '/varied/1', { 'accept-language': lang })).cache, 'MISS')
  for (const lang of langs) t.equal((await get(app, '/varied/1', { 'accept-language': lang })).cache, 'HIT', `variant ${lang} stored`)
  version = 2
  await app.cache.invalidateTags('varied')
  for (const lang of langs) {
    const answer = await get(app, '/varied/1', { 'accept-language': lang })
    t.equal(answer.cache, 'MISS', `variant ${lang} is gone after invalidateTags`)
    t.same(answer.body, { version: 2, lang })
  }
  t.same(warnings(logs), [], 'no warnings')
}

async function namespaces (t: Test, store: StoreCase): Promise<void> {
  const { app, logs } = await withCache({ ...BASE, ...store.options })
  t.teardown(() => app.close())
  const versions = new Map<string, number>()
  app.get('/owners/:ownerId/widgets', {
    config: { cache: { keyPrefix: 'user_{ownerId}_widgets:page_{page}', resourceIdName: null } },
  }, async (request) => ({ owner: param(request, 'ownerId'), page: (request.query as { page: string }).page, version: versions.get(param(request, 'ownerId')) ?? 0 }))
  app.patch('/owners/:ownerId/widgets/:widgetId', {
    config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', invalidateNamespaces: ['user_{ownerId}_widgets'] } },
  }, async (request, reply) => {
    const ownerId = param(request, 'ownerId')
    if ((request.body as { fail?: number } | undefined)?.fail !== undefined) return reply.code(409).send({ error: 'no' })
    versions.set(ownerId, (versions.get(ownerId) ?? 0) + 1)
    return { version: versions.get(ownerId) }
  })
  const owners = ['7', '8', '70', 'a:b', 'a', '*']
  const pages = (owner: string): string[] => [1, 2].map((page) => `/owners/${enc(owner)}/widgets?page=${page}`)
  const all = owners.flatMap(pages)
  const expect = (missing: string[]): string[] => owners.flatMap((o) => pages(o).map(() => missing.includes(o) ? 'MISS' : 'HIT'))

  t.same(await outcomes(app, all), all.map(() => 'MISS'), 'first GETs miss')
  t.same(await outcomes(app, all), all.map(() => 'HIT'), 'second GETs hit')

  // Owner 7 is cleared by the route, owner 8 (laid out the same) by clear({ namespace }).
  const layout = (owner: string): string[] => [`user_${owner}_widgets:page_1`, `user_${owner}_widgets:page_2`, `user_${owner}_widgets:k`, `user_${owner}_widgets`, `user_${owner}_widgets_extra:k`, `user_${owner}_widgetsx:k`]
  for (const owner of ['7', '8']) {
    await app.cache.set('k', owner, { namespace: `user_${owner}_widgets` })
    await app.cache.set(`user_${owner}_widgets`, owner)
    await app.cache.set('k', owner, { namespace: `user_${owner}_widgets_extra` })
    await app.cache.set('k', owner, { namespace: `user_${owner}_widgetsx` })
    t.same(await existing(app, layout(owner)), layout(owner), `owner ${owner}: everything is there before`)
  }

  t.equal((await app.inject({ method: 'PATCH', url: '/owners/7/widgets/1', payload: { fail: 1 } })).statusCode, 409)
  t.same(await outcomes(app, all), all.map(() => 'HIT'), 'a non-2xx mutation clears no namespace')

  t.equal((await app.inject({ method: 'PATCH', url: '/owners/7/widgets/1' })).statusCode, 200)
  await app.cache.clear({ namespace: 'user_8_widgets' })
  const left7 = (await existing(app, layout('7'))).map((key) => key.replace('user_7_', 'user_X_'))
  const left8 = (await existing(app, layout('8'))).map((key) => key.replace('user_8_', 'user_X_'))
  t.same(left7, left8, 'invalidateNamespaces leaves exactly what clear({ namespace }) leaves')
  t.notOk(left7.includes('user_X_widgets:k'), 'the provider value in the namespace is gone')
  t.ok(left7.includes('user_X_widgets_extra:k') && left7.includes('user_X_widgetsx:k'), 'namespaces that only start with the same name stay')
  const after = await Promise.all(pages('7').map((url) => get(app, url)))
  t.same(after.map((a) => [a.cache, a.body.version]), [['MISS', 1], ['MISS', 1]], "owner 7's pages miss, with the new data")
  t.same(await outcomes(app, all), expect(['8']), "owner 8's pages were cleared by clear(); every other owner's pages stay")

  // Filled-in values are one key segment: a user's `*` or `:` clears only its own namespace.
  t.equal((await app.inject({ method: 'PATCH', url: `/owners/${enc('*')}/widgets/1` })).statusCode, 200)
  t.same(await outcomes(app, all), expect(['*']), "ownerId '*' clears only user_*_widgets")
  t.equal((await app.inject({ method: 'PATCH', url: `/owners/${enc('a:b')}/widgets/1` })).statusCode, 200)
  t.same(await outcomes(app, all), expect(['a:b']), "ownerId 'a:b' clears only its own pages, not those of 'a'")
  t.same(warnings(logs), [], 'no warnings')
}

async function providerTags (t: Test, store: StoreCase): Promise<void> {
  const { app, logs } = await withCache({ ...BASE, ...store.options })
  t.teardown(() => app.close())
  const c = app.cache
  await c.set('a1', 'a1', { tags: ['a'] })
  await c.set('b1', 'b1', { tags: ['b'] })
  await c.set('ab1', 'ab1', { tags: ['a', 'b'] })
  await c.set('ab2', 'ab2', { tags: ['a', 'b'] })
  await c.set('c1', 'c1', { tags: ['c'] })
  await c.set('untagged', 'untagged')
  await c.set('k', 'ns-a', { namespace: 'nsx', tags: ['a'], expiration: 600 })
  let produced = 0
  const producer = (value: string) => async () => { produced++; return value }
  t.equal(await c.getOrSet('g1', producer('g1'), { tags: ['a'] }), 'g1')
  t.equal(await c.getOrSet('g2', producer('g2'), { tags: ['c'] }), 'g2')
  t.equal(await c.getOrSet('g1', producer('other'), { tags: ['a'] }), 'g1', 'getOrSet with tags stores its value')
  t.equal(produced, 2)
  const keys = ['a1', 'b1', 'ab1', 'ab2', 'c1', 'untagged', 'nsx:k', 'g1', 'g2']
  t.same(await present(app, keys), keys, 'everything is stored')

  t.equal(await c.invalidateTags('nothing-has-this-tag'), undefined, 'an unused tag resolves void')
  t.same(await present(app, keys), keys, '...and removes nothing')

  t.equal(await c.invalidateTags('a'), undefined, 'invalidateTags(string) resolves void')
  t.same(await present(app, keys), ['b1', 'c1', 'untagged', 'g2'], "invalidateTags('a') removes every entry tagged a (two-tag entries, a namespace, getOrSet)")
  t.equal(await c.get('k', { namespace: 'nsx' }), undefined)
  t.equal(await c.getOrSet('g1', producer('g1-new'), { tags: ['a'] }), 'g1-new', 'getOrSet runs its producer again')
  t.equal(produced, 3)

  // A tag is usable again after it was invalidated.
  await c.set('a1', 'a1-new', { tags: ['a'] })
  await c.set('ab1', 'ab1-new', { tags: ['a', 'b'] })
  t.equal(await c.get('a1'), 'a1-new', 'a value set with the tag after its invalidation is stored')
  t.equal(await c.get('g1'), 'g1-new')

  t.equal(await c.invalidateTags('b'), undefined)
  t.same(await present(app, ['a1', 'b1', 'ab1', 'c1', 'g1', 'g2', 'untagged']), ['a1', 'c1', 'g1', 'g2', 'untagged'],
    "an entry with tags a and b is gone after invalidateTags('b') too")

  await c.set('b1', 'b1', { tags: ['b'] })
  t.equal(await c.invalidateTags(['b', 'c']), undefined, 'invalidateTags(array) resolves void')
  t.same(await present(app, ['a1', 'b1', 'c1', 'g1', 'g2', 'untagged']), ['a1', 'g1', 'untagged'], 'an array invalidates every tag in it')

  // A key set again with other tags carries the new ones; many tags on one entry.
  await c.set('retagged', 1, { tags: ['r1'] })
  await c.set('retagged', 2, { tags: ['r2'] })
  await c.invalidateTags('r2')
  t.equal(await c.get('retagged'), undefined, 'a key set again with tag r2 is gone after invalidateTags(r2)')
  const many = Array.from({ length: 20 }, (_, i) => `m${i}`)
  await c.set('many', 1, { tags: many })
  await c.invalidateTags('m19')
  t.equal(await c.get('many'), undefined, 'an entry with 20 tags is gone after its last one is invalidated')

  // A tag that is a prefix of, or a pattern over, another tag removes only its own entries.
  for (const tag of ['t', 'tt', 't*', 't?', 'T', 't:1', 't:10']) await c.set(`p-${tag}`, tag, { tags: [tag] })
  await c.invalidateTags(['t*', 't:1'])
  t.same(await present(app, ['p-t', 'p-tt', 'p-t*', 'p-t?', 'p-T', 'p-t:1', 'p-t:10']), ['p-t', 'p-tt', 'p-t?', 'p-T', 'p-t:10'],
    'tags are exact strings, never patterns or prefixes')

  // Tags keep working after a clear() and a clear({ namespace }).
  await c.set('k', 1, { namespace: 'nsy', tags: ['after'] })
  await c.clear({ namespace: 'nsy' })
  await c.set('k', 2, { namespace: 'nsy', tags: ['after'] })
  await c.clear()
  await c.set('after-clear', 1, { tags: ['after'] })
  await c.set('k', 3, { namespace: 'nsy', tags: ['after'] })
  t.same(await present(app, ['after-clear', 'nsy:k']), ['after-clear', 'nsy:k'])
  await c.invalidateTags('after')
  t.same(await present(app, ['after-clear', 'nsy:k']), [], 'entries set after a clear() are invalidated by their tag')
  t.same(warnings(logs), [], 'no warnings')
}

/** A tag outlives its shortest-lived entry: invalidation still reaches the longer-lived ones. */
async function tagLifetimes (t: Test, store: StoreCase): Promise<void> {
  const { app, logs } = await withCache({ ...BASE, ...store.options })
  t.teardown(() => app.close())
  const c = app.cache
  let version = 1
  app.get('/short/:id', { config: { cache: { keyPrefix: 'short', tags: ['t4'], expiration: 1 } } }, async () => ({ version }))
  await c.set('long1', 1, { tags: ['t1'], expiration: 60 })
  await c.set('short1', 1, { tags: ['t1'], expiration: 1 })
  await c.set('short2', 1, { tags: ['t2'], expiration: 1 })
  await c.set('long2', 1, { tags: ['t2'], expiration: 60 })
  await c.set('extended', 1, { tags: ['t3'], expiration: 1 })
  t.equal(await c.expire('extended', 60), true)
  await c.set('long4', 1, { tags: ['t4'], expiration: 60 })
  t.equal((await get(app, '/short/1')).cache, 'MISS')
  await sleep(2200)
  const keys = ['long1', 'short1', 'short2', 'long2', 'extended', 'long4']
  t.same(await present(app, keys), ['long1', 'long2', 'extended', 'long4'], 'the 1-second entries expired, the others are there')
  t.equal((await get(app, '/short/1')).cache, 'MISS', 'the 1-second route entry expired')
  t.equal((await get(app, '/short/1')).cache, 'HIT')
  version = 2
  for (const [tag, key] of [['t1', 'long1'], ['t2', 'long2'], ['t3', 'extended'], ['t4', 'long4']]) {
    await c.invalidateTags(tag)
    t.equal(await c.get(key), undefined, `invalidateTags(${tag}) removes ${key}, after a shorter-lived entry with that tag expired`)
  }
  const again = await get(app, '/short/1')
  t.same([again.cache, again.body.version], ['MISS', 2], 'and the route entry stored again under t4')
  t.same(warnings(logs), [], 'no warnings')
}

/** In one process: a fill (getOrSet or route miss) that started before invalidateTags is neither stored nor joined. */
async function inFlight (t: Test, store: StoreCase): Promise<void> {
  const { app, logs } = await withCache({ ...BASE, ...store.options })
  t.teardown(() => app.close())
  const c = app.cache
  let version = 1
  let started!: () => void
  const running = new Promise<void>((resolve) => { started = resolve })
  const producer = async () => { const v = version; started(); await sleep(30); return { v } }
  const early = c.getOrSet('item', producer, { tags: ['x'] })
  await running
  version = 2
  await c.invalidateTags('x')
  const late = c.getOrSet('item', producer, { tags: ['x'] })
  t.same(await early, { v: 1 }, 'the call from before the invalidation may see the old value')
  t.same(await late, { v: 2 }, 'the call from after it runs its own producer')
  t.same(await c.get('item'), { v: 2 }, 'and only the new value is stored')

  let reading!: () => void
  let release!: () => void
  const read = new Promise<void>((resolve) => { reading = resolve })
  const gate = new Promise<void>((resolve) => { release = resolve })
  app.get('/slow/:id', { config: { cache: { keyPrefix: 'slow', tags: ['y'] } } }, async (request) => {
    const v = version
    if ((request.query as { slow?: string }).slow === '1') { reading(); await gate }
    return { v }
  })
  const first = get(app, '/slow/1?slow=1')
  await read
  version = 3
  await c.invalidateTags('y')
  const second = get(app, '/slow/1')
  await sleep(30)
  release()
  t.equal((await first).body.v, 2, 'the slow GET returns what it read')
  t.equal((await second).body.v, 3, 'a GET sent after invalidateTags does not join the fill that started before it')
  t.equal((await get(app, '/slow/1')).body.v, 3, 'the fill that started before invalidateTags was not stored over the new one')
  t.same(warnings(logs), [], 'no warnings')
}

async function manyEntries (t: Test, store: StoreCase): Promise<void> {
  const N = 10_000
  const BATCH = 500
  const { app, logs } = await withCache({ ...BASE, ...store.options, ...(store.name === 'memory' ? { memory: { maxEntries: 50_000 } } : {}) })
  t.teardown(() => app.close())
  const keys = Array.from({ length: N }, (_, i) => `bulk:${i}`)
  const controls = ['bulk2', 'bul', 'bulk*', 'Bulk', 'bulk ', 'other'].flatMap((tag) => Array.from({ length: 20 }, (_, i) => ({ key: `control:${tag}:${i}`, tag })))
  const untagged = Array.from({ length: 20 }, (_, i) => `untagged:${i}`)
  const started = Date.now()
  for (let i = 0; i < N; i += BATCH) {
    await Promise.all(keys.slice(i, i + BATCH).map((key, j) => app.cache.set(key, { n: i + j }, { tags: ['bulk'] })))
  }
  await Promise.all(controls.map(({ key, tag }) => app.cache.set(key, tag, { tags: [tag] })))
  await Promise.all(untagged.map((key) => app.cache.set(key, 'plain')))
  const stored = Date.now()
  t.equal((await present(app, keys)).length, N, `all ${N} entries are stored first`)

  const before = Date.now()
  t.equal(await app.cache.invalidateTags('bulk'), undefined, 'ONE invalidateTags call')
  const invalidated = Date.now()
  const sample = Array.from({ length: 200 }, () => keys[Math.floor(Math.random() * N)])
  const sampled = await Promise.all(sample.map((key) => app.cache.get(key)))
  t.equal(sampled.filter((v) => v !== undefined).length, 0, 'a random sample of 200 entries: all gone')
  t.equal((await present(app, keys)).length, 0, `a get of each of the ${N} entries: all gone`)
  const controlKeys = controls.map(({ key }) => key)
  t.same(await present(app, [...controlKeys, ...untagged]), [...controlKeys, ...untagged], 'entries with other (similar) tags or none stay')
  t.comment(`${store.name}: ${N} tagged sets ${stored - started} ms, invalidateTags ${invalidated - before} ms, verification ${Date.now() - invalidated} ms`)
  t.same(warnings(logs), [], 'no warnings (no operation failed open)')
}

async function specialValues (t: Test, store: StoreCase): Promise<void> {
  const { app, logs } = await withCache({ ...BASE, ...store.options })
  t.teardown(() => app.close())
  // The value from the query (and the PATCH's from its JSON body): a route param is limited to
  // Fastify's maxParamLength (100), and one value here is 300 characters long.
  app.get('/widgets/:widgetId', {
    config: { cache: { keyPrefix: 'spw', resourceIdName: 'widgetId', tags: ['owner:{ownerId}'] } },
  }, async (request) => ({ owner: (request.query as { ownerId: string }).ownerId, widget: param(request, 'widgetId') }))
  app.patch('/owners', {
    config: { cache: { keyPrefix: 'sp_patch', resourceIdName: null, invalidateTags: ['owner:{ownerId}'] } },
  }, async () => ({ ok: true }))
  // One widget (and key) per value; the value only reaches the tag.
  const urls = VALUES.map((value, i) => `/widgets/${i}?ownerId=${enc(value)}`)
  const onlyMiss = (value: string): string[] => VALUES.map((v) => v === value ? 'MISS' : 'HIT')

  // The provider: a literal tag removes exactly its value's entry.
  const providerKeys = VALUES.map((_, i) => `sp:${i}`)
  for (const [i, value] of VALUES.entries()) await app.cache.set(providerKeys[i], value, { tags: [`owner:${value}`] })
  t.same(await present(app, providerKeys), providerKeys)
  const gone = new Set<string>()
  for (const special of SPECIALS) {
    await app.cache.invalidateTags(`owner:${special}`)
    gone.add(special)
    const left = (await present(app, providerKeys)).map((key) => VALUES[providerKeys.indexOf(key)])
    t.same(left, VALUES.filter((v) => !gone.has(v)), `provider invalidateTags('owner:' + ${label(special)}) removes exactly that entry`)
  }

  // Route entries carry the value as it is: a provider call with the literal filled tag reaches them.
  t.same(await outcomes(app, urls), VALUES.map(() => 'MISS'))
  t.same(await outcomes(app, urls), VALUES.map(() => 'HIT'))
  const answer = await get(app, urls[0])
  t.same(answer.body, { owner: 'a*b', widget: '0' })
  for (const special of SPECIALS) {
    await app.cache.invalidateTags(`owner:${special}`)
    t.same(await outcomes(app, urls), onlyMiss(special), `provider invalidateTags('owner:' + ${label(special)}) removes exactly the route entry of that value`)
  }

  // A route's invalidateTags with the same value in the request: the route entry and a provider value.
  for (const [i, value] of VALUES.entries()) await app.cache.set(providerKeys[i], value, { tags: [`owner:${value}`] })
  gone.clear()
  for (const special of SPECIALS) {
    const res = await app.inject({ method: 'PATCH', url: '/owners', payload: { ownerId: special } })
    t.equal(res.statusCode, 200)
    gone.add(special)
    t.same(await outcomes(app, urls), onlyMiss(special), `PATCH with ownerId ${label(special)} removes exactly the route entry of that value`)
    const left = (await present(app, providerKeys)).map((key) => VALUES[providerKeys.indexOf(key)])
    t.same(left, VALUES.filter((v) => !gone.has(v)), `...and exactly the provider value tagged 'owner:' + ${label(special)}`)
  }
  t.same(warnings(logs), [], 'no warnings')
}

async function managementRoute (t: Test, store: StoreCase): Promise<void> {
  const { app, logs } = await withCache({ ...BASE, ...store.options, managementRoutes: { allowUnauthenticated: true } })
  t.teardown(() => app.close())
  app.get('/owners/:ownerId/widgets/:widgetId', {
    config: { cache: { keyPrefix: 'mw', resourceIdName: 'widgetId', tags: ['owner:{ownerId}'] } },
  }, async (request) => ({ owner: param(request, 'ownerId') }))
  const owners = ['7', '8', 'a*b', 'ab', 'a/b', 'a b', 'é🔑']
  const urls = owners.map((owner, i) => `/owners/${enc(owner)}/widgets/${i}`)
  t.same(await outcomes(app, urls), owners.map(() => 'MISS'))
  t.same(await outcomes(app, urls), owners.map(() => 'HIT'))
  await app.cache.set('p7', 7, { tags: ['owner:7'] })
  let res = await app.inject({ method: 'DELETE', url: `/cache/tags/${enc('owner:7')}` })
  t.ok(res.statusCode >= 200 && res.statusCode < 300, `DELETE /cache/tags/owner%3A7 answers 2xx (${res.statusCode})`)
  t.same(await outcomes(app, urls), owners.map((o) => o === '7' ? 'MISS' : 'HIT'), 'the route entries tagged owner:7 are gone, no other')
  t.equal(await app.cache.get('p7'), undefined, 'and the provider value tagged owner:7')
  for (const owner of ['a*b', 'a/b', 'a b', 'é🔑']) {
    res = await app.inject({ method: 'DELETE', url: `/cache/tags/${enc(`owner:${owner}`)}` })
    t.ok(res.statusCode >= 200 && res.statusCode < 300, `DELETE /cache/tags/${enc(`owner:${owner}`)} answers 2xx (${res.statusCode})`)
    t.same(await outcomes(app, urls), owners.map((o) => o === owner ? 'MISS' : 'HIT'), `the URL-encoded tag owner:${owner} removes exactly its entry`)
  }
  t.same(warnings(logs), [], 'no warnings')
}

const PER_STORE: Array<[string, (t: Test, store: StoreCase) => Promise<void>]> = [
  ['route tags: MISS, HIT; a PATCH invalidating owner:{ownerId} removes that owner\'s entries only', routeTags],
  ['invalidating a tag removes every vary variant', varyVariants],
  ['invalidateNamespaces on a PATCH route clears what clear({ namespace }) clears', namespaces],
  ['provider set/getOrSet with tags, invalidateTags(string | array)', providerTags],
  ['a tag outlives its shortest-lived entry', tagLifetimes],
  ['a fill that started before invalidateTags is neither joined nor stored', inFlight],
  ['user values with * : { } spaces and unicode are exact tags', specialValues],
  ['the management route DELETE /cache/tags/:tag', managementRoute],
]

// Every store's servers start first; then the behaviour subtests of all stores run at once, each
// on its own app and keyPrefix. The 10,000-entry subtests run after them: a namespace clear on
// Redis SCANs the whole database, and 10,000 more keys written meanwhile (on a loaded 2-core CI
// machine) can push it past operationTimeout. One store at a time: on 2 cores they would only
// slow each other down.
t.test('tags and namespaces on every store', async (t) => {
  const redis = await startRedisServer(t)
  const cluster = await startRedisCluster(t, 3)
  const client = new Cluster(cluster.startupNodes, { lazyConnect: true })
  t.teardown(() => client.disconnect())
  await client.connect()
  const memcached = [await startMemcached(), await startMemcached()]
  for (const server of memcached) t.teardown(() => server.stop())
  const stores: StoreCase[] = [
    { name: 'memory', options: {} },
    { name: 'redis', options: { backend: 'redis', redis: { url: redis.url } } },
    { name: 'redis cluster (3 masters)', options: { backend: 'redis', redis: { client } } },
    { name: 'memcached (2 servers)', options: { backend: 'memcached', memcached: { servers: memcached.map((s) => s.address).join(',') } } },
  ]
  await t.test('behaviour', { jobs: 32 }, async (t) => {
    for (const store of stores) {
      for (const [name, run] of PER_STORE) t.test(`${store.name}: ${name}`, (t) => run(t, store))
    }
  })
  await t.test('10,000 entries under one tag are gone after one invalidateTags call', async (t) => {
    for (const store of stores) t.test(store.name, (t) => manyEntries(t, store))
  })
})

// ---------------------------------------------------------------------------------------------
// Store-independent
// ---------------------------------------------------------------------------------------------

t.test('registration: misplaced or invalid tag and namespace fields are refused', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  const register = (method: 'get' | 'post' | 'put' | 'patch' | 'delete', url: string, cache: unknown): (Error & { code?: string }) | null => {
    try {
      app[method](url, { config: { cache: cache as never } }, async () => 'x')
      return null
    } catch (err) {
      return err as Error & { code?: string }
    }
  }

  // Accepted.
  t.equal(register('get', '/ok/get/:id', { keyPrefix: 'ok', tags: ['owner:{ownerId}', 'widgets'] }), null, 'a GET route with tags')
  t.equal(register('patch', '/ok/patch/:id', { keyPrefix: 'ok', invalidateTags: ['owner:{ownerId}'], invalidateNamespaces: ['user_{ownerId}_widgets'] }), null,
    'a mutation route with invalidateTags and invalidateNamespaces')
  t.equal(register('get', '/ok/empty/:id', { keyPrefix: 'ok', tags: [] }), null, 'an empty tags list')

  // Misplaced: InvalidRequestError.
  for (const [method, url, cache, what] of [
    ['get', '/x1', { keyPrefix: 'x', invalidateTags: ['a'] }, 'a GET route with invalidateTags'],
    ['get', '/x2', { keyPrefix: 'x', invalidateNamespaces: ['a'] }, 'a GET route with invalidateNamespaces'],
    ['patch', '/x3', { keyPrefix: 'x', tags: ['a'] }, 'a PATCH route with tags'],
    ['post', '/x4', { keyPrefix: 'x', tags: ['a'] }, 'a POST route with tags'],
    ['put', '/x5', { keyPrefix: 'x', tags: ['a'] }, 'a PUT route with tags'],
    ['delete', '/x6', { keyPrefix: 'x', tags: ['a'] }, 'a DELETE route with tags'],
  ] as const) {
    const err = register(method, url, cache)
    t.ok(err instanceof InvalidRequestError, `${what} → InvalidRequestError (${err?.message})`)
    t.equal(err?.code, 'FST_CACHE_INVALID_REQUEST')
  }

  // Invalid: CacheConfigurationError naming the route and the field.
  for (const [method, url, cache, field] of [
    ['get', '/x', { keyPrefix: 'x', tags: ['ok', 1] }, 'tags'],
    ['get', '/x', { keyPrefix: 'x', tags: [''] }, 'tags'],
    ['get', '/x', { keyPrefix: 'x', tags: 'owner' }, 'tags'],
    ['get', '/x', { keyPrefix: 'x', tags: [null] }, 'tags'],
    ['patch', '/x', { keyPrefix: 'x', invalidateTags: [1] }, 'invalidateTags'],
    ['patch', '/x', { keyPrefix: 'x', invalidateTags: [''] }, 'invalidateTags'],
    ['patch', '/x', { keyPrefix: 'x', invalidateNamespaces: [''] }, 'invalidateNamespaces'],
    ['patch', '/x', { keyPrefix: 'x', invalidateNamespaces: 'user_{ownerId}_widgets' }, 'invalidateNamespaces'],
  ] as const) {
    const err = register(method, url, cache)
    const where = `config.cache of ${method.toUpperCase()} ${url}: ${field}`
    t.ok(err instanceof CacheConfigurationError, `${JSON.stringify(cache)} → CacheConfigurationError (${err?.message})`)
    t.equal(err?.code, 'FST_CACHE_CONFIGURATION')
    t.ok(err?.message.startsWith(where), `the message starts with '${where}': ${err?.message}`)
  }

  // A malformed template.
  for (const [method, cache] of [['get', { keyPrefix: 'x', tags: ['owner:{ownerId'] }], ['patch', { keyPrefix: 'x', invalidateTags: ['owner:{'] }], ['patch', { keyPrefix: 'x', invalidateNamespaces: ['user_{}_widgets'] }]] as const) {
    const err = register(method, '/y', cache)
    t.ok(err instanceof CacheConfigurationError, `${JSON.stringify(cache)} → CacheConfigurationError (${err?.message})`)
    t.ok(err?.message.startsWith(`config.cache of ${method.toUpperCase()} /y`), `the message names the route: ${err?.message}`)
  }
})

t.test('a tag placeholder the request does not have: warning, BYPASS, nothing stored untagged', async (t) => {
  const { app, logs } = await withCache()
  t.teardown(() => app.close())
  let calls = 0
  app.get('/widgets/:widgetId', { config: { cache: { keyPrefix: 'widget', tags: ['owner:{ownerId}'] } } }, async () => { calls++; return { calls } })
  const first = await get(app, '/widgets/1')
  const second = await get(app, '/widgets/1')
  t.equal(first.status, 200, 'the request still succeeds')
  t.equal(first.cache, 'BYPASS')
  t.equal(second.cache, 'BYPASS', 'an entry whose tag cannot be filled is not stored (it could never be invalidated by it)')
  t.equal(calls, 2)
  t.ok(logs.some((line) => line.level >= WARN && /ownerId/.test(line.msg)), 'a warning names the missing placeholder')
  t.equal((await get(app, '/widgets/1?ownerId=7')).cache, 'MISS')
  t.equal((await get(app, '/widgets/1?ownerId=7')).cache, 'HIT')
})

t.test('enabled: false — invalidateTags resolves void; tagged routes run uncached', async (t) => {
  const { app } = await withCache({ enabled: false })
  t.teardown(() => app.close())
  app.get('/w/:id', { config: { cache: { keyPrefix: 'w', tags: ['w'] } } }, async () => 'w')
  app.patch('/w/:id', { config: { cache: { keyPrefix: 'w', invalidateTags: ['w'], invalidateNamespaces: ['w'] } } }, async () => 'ok')
  await app.cache.set('k', 1, { tags: ['w'] })
  t.equal(await app.cache.invalidateTags(['w']), undefined)
  t.equal((await app.inject('/w/1')).statusCode, 200)
  t.equal((await app.inject({ method: 'PATCH', url: '/w/1' })).statusCode, 200)
})

t.test('tags on a named backend: invalidateTags({ backendName }) and routes with backendName', async (t) => {
  const { app } = await withCache({ backends: { other: { backend: 'memory' } } })
  t.teardown(() => app.close())
  let version = 1
  app.get('/o/:id', { config: { cache: { keyPrefix: 'o', backendName: 'other', tags: ['o:{id}'] } } }, async () => ({ version }))
  app.patch('/o/:id', { config: { cache: { keyPrefix: 'o_patch', resourceIdName: null, backendName: 'other', invalidateTags: ['o:{id}'] } } }, async () => { version++; return { version } })
  await app.cache.set('k', 1, { backendName: 'other', tags: ['x'] })
  await app.cache.invalidateTags('x', { backendName: 'other' })
  t.equal(await app.cache.get('k', { backendName: 'other' }), undefined, 'invalidateTags with backendName reaches that store')
  t.equal((await get(app, '/o/1')).cache, 'MISS')
  t.equal((await get(app, '/o/1')).cache, 'HIT')
  t.equal((await app.inject({ method: 'PATCH', url: '/o/1' })).statusCode, 200)
  const after = await get(app, '/o/1')
  t.same([after.cache, after.body.version], ['MISS', 2], "a mutation route's invalidateTags reaches its backendName store")
})

t.test('the management route runs the access check', async (t) => {
  const guard = async (request: FastifyRequest, reply: any) => {
    if (request.headers['x-admin'] !== 'yes') return reply.code(401).send({ error: 'unauthorized' })
  }
  const { app } = await withCache({ managementRoutes: { onRequest: guard } })
  t.teardown(() => app.close())
  await app.cache.set('k', 1, { tags: ['owner:7'] })
  t.equal((await app.inject({ method: 'DELETE', url: '/cache/tags/owner%3A7' })).statusCode, 401)
  t.equal(await app.cache.get('k'), 1, 'a refused request invalidates nothing')
  const res = await app.inject({ method: 'DELETE', url: '/cache/tags/owner%3A7', headers: { 'x-admin': 'yes' } })
  t.ok(res.statusCode >= 200 && res.statusCode < 300, `2xx with the check passing (${res.statusCode})`)
  t.equal(await app.cache.get('k'), undefined)
})
