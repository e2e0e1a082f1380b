import t from 'tap'
import Fastify from 'fastify'
import { Cluster, type Redis } from 'ioredis'
import serverCache from '../index.js'
import { createRedisStore } from '../lib/stores/redis.js'
import { startRedisCluster } from './helpers/redis-server.js'

const PREFIX = 'fastify-cache'

/** Per master, how many of `keys` it holds (asked of each node directly, not via the cluster). */
async function holders (masters: Redis[], keys: string[]): Promise<number[]> {
  return await Promise.all(masters.map(async (node) => {
    const found = await Promise.all(keys.map((key) => node.call('EXISTS', key).catch(() => 0)))
    return found.filter((n) => n === 1).length
  }))
}

t.test('a 3-master cluster: keys across slots, deletePattern and clear on every master', async (t) => {
  const cluster = await startRedisCluster(t, 3)
  const client = new Cluster(cluster.startupNodes, { lazyConnect: true })
  t.teardown(() => client.disconnect())
  const app = Fastify()
  t.teardown(() => app.close())
  const store = createRedisStore({ client }, { keyPrefix: PREFIX, operationTimeout: 1000, log: app.log, fastify: app })
  t.teardown(() => store.close())
  await store.connect()
  const masters = client.nodes('master')
  t.equal(masters.length, 3)

  const keys = Array.from({ length: 30 }, (_, i) => `${PREFIX}:k:${i}`)
  for (const key of keys) await store.set(key, Buffer.from(key), 60)
  for (const key of keys) t.same(await store.get(key), Buffer.from(key), `get ${key}`)
  const spread = await holders(masters, keys)
  t.ok(spread.filter((n) => n > 0).length >= 2, `keys live on several masters: ${spread.join('/')}`)
  t.equal(await store.exists(keys[0]), true)
  t.equal(await store.expire(keys[0], 120), true)
  t.ok(await store.ttl(keys[0]) > 60)
  t.equal(await store.delete(keys), 30, 'one delete() over many slots (no CROSSSLOT)')
  t.equal(await store.exists(keys[0]), false)

  const matches = Array.from({ length: 30 }, (_, i) => `${PREFIX}:user_1_widgets:${i}`)
  const others = Array.from({ length: 10 }, (_, i) => `${PREFIX}:user_2_widgets:${i}`)
  for (const key of [...matches, ...others]) await store.set(key, Buffer.from('v'), 60)
  const matchSpread = await holders(masters, matches)
  t.ok(matchSpread.filter((n) => n > 0).length >= 2, `matches live on several masters: ${matchSpread.join('/')}`)
  t.equal(await store.deletePattern(`${PREFIX}:user_1_widgets:*`), 30)
  t.same(await holders(masters, matches), [0, 0, 0], 'no match left on any master')
  t.equal((await holders(masters, others)).reduce((a, b) => a + b, 0), 10, 'non-matching keys stay')

  await client.set('foreign:{a}', 'theirs')
  await client.set('foreign:{b}', 'theirs')
  await store.clear(`${PREFIX}:`)
  t.equal((await holders(masters, others)).reduce((a, b) => a + b, 0), 0, 'clear() empties our prefix everywhere')
  t.equal(await client.get('foreign:{a}'), 'theirs')
  t.equal(await client.get('foreign:{b}'), 'theirs')
  t.equal(await store.ping(), true)

  await store.close()
  t.equal(client.status, 'ready', 'the cluster client passed in is not closed')
})

t.test('the plugin on a 3-master cluster: route caching, key deletes and patterns across masters', async (t) => {
  const cluster = await startRedisCluster(t, 3)
  const client = new Cluster(cluster.startupNodes, { lazyConnect: true })
  t.teardown(() => client.disconnect())
  await client.connect()
  const keyPrefix = 'plugin'
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(serverCache, { backend: 'redis', redis: { client }, keyPrefix })
  let version = 1
  app.get('/users/:userId/widgets', { config: { cache: { keyPrefix: 'user_{userId}_widgets:page_{page}', resourceIdName: null } } }, async () => ({ version }))
  app.get('/widgets/:widgetId', { config: { cache: { keyPrefix: 'widget' } } }, async () => ({ version }))
  app.patch('/users/:userId/widgets/:widgetId', {
    config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', patternToInvalidateExtra: ['user_{userId}_widgets:*'] } },
  }, async () => { version++; return { version } })

  const pages = Array.from({ length: 20 }, (_, i) => `/users/1/widgets?page=${i}`)
  for (const url of [...pages, '/widgets/5']) t.equal((await app.inject(url)).headers['x-cache'], 'MISS')
  for (const url of [...pages, '/widgets/5']) t.equal((await app.inject(url)).headers['x-cache'], 'HIT')
  await app.inject('/users/2/widgets?page=0')
  const stored = pages.map((_, i) => `${keyPrefix}:user_1_widgets:page_${i}`)
  const spread = await holders(client.nodes('master'), stored)
  t.ok(spread.filter((n) => n > 0).length >= 2, `the list pages live on several masters: ${spread.join('/')}`)

  t.equal((await app.inject({ method: 'PATCH', url: '/users/1/widgets/5' })).statusCode, 200)
  t.same(await holders(client.nodes('master'), stored), [0, 0, 0], 'every match deleted, on every master')
  const after = await app.inject('/widgets/5')
  t.equal(after.headers['x-cache'], 'MISS', 'the key delete went through')
  t.equal(after.json().version, 2)
  t.equal((await app.inject('/users/2/widgets?page=0')).headers['x-cache'], 'HIT', 'another user\'s list survives')
  await app.close()
  t.equal(client.status, 'ready', 'the cluster client passed in is not closed')
})
