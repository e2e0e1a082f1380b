import t from 'tap'
import Fastify from 'fastify'
import { Cluster, type Redis } from 'ioredis'
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
