import t from 'tap'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
// The demo is plain JavaScript importing the package by name: it runs against the built dist/.
import { buildDemo } from '../demo/server.js'
import type { ServerCacheOptions } from '../index.js'
import { startMemcached } from './helpers/memcached-server.js'
import { startRedisServer } from './helpers/redis-server.js'

const TOKEN = 'demo-test-token'

interface Answer { status: number, cache: string | null, headers: Headers, body: any }

/** The demo on a free port, over real HTTP; memory store whatever the environment says. */
async function start (t: { teardown (fn: () => unknown): void }, cache: ServerCacheOptions = { backend: 'memory' }): Promise<(path: string, init?: RequestInit) => Promise<Answer>> {
  const app: FastifyInstance = await buildDemo({ adminToken: TOKEN, cache: { keyPrefix: `demo-${Math.random().toString(36).slice(2)}`, ...cache }, logger: false, delayMs: 1 })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  return async (path, init = {}) => {
    const headers = new Headers(init.headers)
    if (init.body !== undefined) headers.set('content-type', 'application/json')
    const res = await fetch(base + path, { ...init, headers })
    const text = await res.text()
    return { status: res.status, cache: res.headers.get('x-cache'), headers: res.headers, body: text === '' ? null : JSON.parse(text) }
  }
}

const patch = (body: unknown): RequestInit => ({ method: 'PATCH', body: JSON.stringify(body) })

t.test('an item: the second GET is a HIT, with age and a matching etag', async (t) => {
  const http = await start(t)
  const miss = await http('/widgets/1')
  t.equal(miss.status, 200)
  t.equal(miss.cache, 'MISS')
  t.match(miss.body, { id: 1, ownerId: 1, name: 'Sprocket' })

  const hit = await http('/widgets/1')
  t.equal(hit.cache, 'HIT')
  t.same(hit.body, miss.body)
  t.equal(hit.headers.get('age'), '0')
  t.equal(hit.headers.get('etag'), miss.headers.get('etag'))

  const notModified = await http('/widgets/1', { headers: { 'if-none-match': String(miss.headers.get('etag')) } })
  t.equal(notModified.status, 304)
  t.equal(notModified.cache, 'HIT')

  t.equal((await http('/widgets/99')).status, 404)
  t.equal((await http('/widgets/99')).cache, 'MISS', 'a 404 is not stored')
  t.equal((await http('/widgets/007')).status, 400, 'non-canonical ids are refused, not cached')
  t.equal((await http('/widgets/007')).cache, null, 'refused by validation, before the cache looks up')
})

t.test('a PATCH makes the next GET a MISS with the new data', async (t) => {
  const http = await start(t)
  await http('/widgets/2')
  t.equal((await http('/widgets/2')).cache, 'HIT')

  const updated = await http('/widgets/2', patch({ color: 'teal' }))
  t.equal(updated.status, 200)
  t.equal(updated.body.color, 'teal')

  const after = await http('/widgets/2')
  t.equal(after.cache, 'MISS')
  t.equal(after.body.color, 'teal')
  t.equal((await http('/widgets/2')).cache, 'HIT')

  const rejected = await http('/widgets/2', patch({ color: '' }))
  t.equal(rejected.status, 400)
  t.equal((await http('/widgets/2')).cache, 'HIT', 'a failed mutation invalidates nothing')
})

const stores: Array<[string, (t: { teardown (fn: () => unknown): void }) => Promise<ServerCacheOptions>]> = [
  ['memory', async () => ({ backend: 'memory' })],
  ['redis', async (t) => ({ backend: 'redis', redis: { url: (await startRedisServer(t)).url } })],
  ['memcached', async (t) => {
    const server = await startMemcached()
    t.teardown(() => server.stop())
    return { backend: 'memcached', memcached: { servers: server.address } }
  }],
]

for (const [name, store] of stores) {
  t.test(`${name}: the owner's list pages are invalidated by their tag, other users' are not`, async (t) => {
    const http = await start(t, await store(t))
    const first = await http('/users/1/widgets')
    t.equal(first.cache, 'MISS', 'no ?page: the default is filled in before the lookup (not BYPASS)')
    t.match(first.body, { page: 1, pageSize: 3, total: 4 })
    t.equal((await http('/users/1/widgets?page=1')).cache, 'HIT', 'same entry as the default page')
    await http('/users/1/widgets?page=2')
    t.equal((await http('/users/1/widgets?page=2')).cache, 'HIT')
    await http('/users/2/widgets')
    t.equal((await http('/users/2/widgets')).cache, 'HIT')

    t.equal((await http('/widgets/1', patch({ name: 'Sprocket II' }))).status, 200)

    const page1 = await http('/users/1/widgets?page=1')
    t.equal(page1.cache, 'MISS')
    t.equal(page1.body.items[0].name, 'Sprocket II')
    t.equal((await http('/users/1/widgets?page=2')).cache, 'MISS', 'every page carried the tag owner:1')
    t.equal((await http('/users/2/widgets')).cache, 'HIT', 'another owner\'s list is untouched')
  })
}

t.test('POST and DELETE invalidate the owner\'s summary (toInvalidateExtra) and lists', async (t) => {
  const http = await start(t)
  t.equal((await http('/users/2')).body.widgetCount, 2)
  t.equal((await http('/users/2')).cache, 'HIT')
  await http('/users/2/widgets')

  const created = await http('/widgets', { method: 'POST', body: JSON.stringify({ ownerId: 2, name: 'Contraption', color: 'orange' }) })
  t.equal(created.status, 201)
  t.equal(created.headers.get('location'), `/widgets/${created.body.id}`)

  const user = await http('/users/2')
  t.equal(user.cache, 'MISS')
  t.equal(user.body.widgetCount, 3)
  const list = await http('/users/2/widgets')
  t.equal(list.cache, 'MISS')
  t.equal(list.body.total, 3)

  await http(`/widgets/${created.body.id}`)
  t.equal((await http(`/widgets/${created.body.id}`)).cache, 'HIT')
  t.equal((await http(`/widgets/${created.body.id}`, { method: 'DELETE' })).status, 204)
  const gone = await http(`/widgets/${created.body.id}`)
  t.equal(gone.status, 404)
  t.equal(gone.cache, 'MISS')
  t.equal((await http('/users/2')).body.widgetCount, 2)
  t.equal((await http('/widgets/12345', { method: 'DELETE' })).status, 404)
})

t.test('countries: string ids, cached', async (t) => {
  const http = await start(t)
  await http('/countries')
  t.equal((await http('/countries')).cache, 'HIT')
  const fr = await http('/countries/FR')
  t.match(fr.body, { code: 'FR', capital: 'Paris' })
  t.equal((await http('/countries/FR')).cache, 'HIT')
  t.equal((await http('/countries/fr')).status, 400)
})

t.test('management routes require the admin token', async (t) => {
  const http = await start(t)
  await http('/widgets/1')
  await http('/widgets/1')

  t.equal((await http('/cache/stats')).status, 401)
  t.equal((await http('/cache/stats', { headers: { 'x-admin-token': 'wrong' } })).status, 401)
  t.equal((await http('/cache/clear', { method: 'DELETE' })).status, 401)

  const auth = { headers: { 'x-admin-token': TOKEN } }
  const stats = await http('/cache/stats', auth)
  t.equal(stats.status, 200)
  t.match(stats.body, { backend: 'memory', fallbackActive: false, hits: 1, misses: 1, routes: { widget: { hits: 1, misses: 1 } } })

  t.match((await http('/cache/ping', auth)).body, { ok: true, backend: 'memory' })
  t.equal((await http('/cache/clear', { method: 'DELETE', ...auth })).status, 200)
  t.equal((await http('/widgets/1')).cache, 'MISS', 'cleared')
})
