import t from 'tap'
import { Redis } from 'ioredis'
import { withCache } from './helpers/app.js'
import { startRedisServer, type RedisServer, type Teardown } from './helpers/redis-server.js'
import { BatchedReads } from '../lib/stores/redis-reads.js'

/** Script calls the server has run so far (EVALSHA and EVAL), from its own statistics. */
async function scriptCalls (client: Redis): Promise<number> {
  const info = await client.info('commandstats')
  let calls = 0
  for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) calls += Number(m[1])
  return calls
}

async function client (t: Teardown, server: RedisServer): Promise<Redis> {
  const redis = new Redis(server.url, { lazyConnect: true })
  t.teardown(() => redis.disconnect())
  await redis.connect()
  return redis
}

/** Two instances sharing one Redis (one keyPrefix), each counting its handler calls. */
async function twoInstances (t: Teardown, url: string): Promise<Array<{ app: Awaited<ReturnType<typeof withCache>>['app'], calls: () => number, logs: Awaited<ReturnType<typeof withCache>>['logs'] }>> {
  const keyPrefix = `batch-${process.pid}`
  return await Promise.all([0, 1].map(async () => {
    const { app, logs } = await withCache({ backend: 'redis', redis: { url }, keyPrefix })
    t.teardown(() => app.close())
    let calls = 0
    app.get('/items/:id', { config: { cache: { keyPrefix: 'item:{id}', expiration: 60, tags: ['item:{id}'] } } }, async (request) => {
      calls++
      return { id: (request.params as { id: string }).id, version: 1 }
    })
    await app.ready()
    return { app, calls: () => calls, logs }
  }))
}

const IDS = Array.from({ length: 60 }, (_, i) => i)

t.test('lookups that arrive together share one script call, and each request gets its own entry', async (t) => {
  const server = await startRedisServer(t)
  const redis = await client(t, server)
  const [a, b] = await twoInstances(t, server.url)

  const before = await scriptCalls(redis)
  const misses = await Promise.all(IDS.map(async (id) => await a.app.inject(`/items/${id}`)))
  const calls = await scriptCalls(redis) - before
  for (const [i, res] of misses.entries()) {
    t.equal(res.statusCode, 200)
    t.equal(res.headers['x-cache'], 'MISS', `/items/${i} is a miss on A`)
    t.same(res.json(), { id: String(i), version: 1 }, `/items/${i} got its own body`)
  }
  t.equal(a.calls(), IDS.length, 'A ran its handler once per key')
  t.ok(calls >= 1 && calls <= 6, `60 lookups ran ${calls} script calls (one per request would be 60)`)

  const hits = await Promise.all(IDS.map(async (id) => await b.app.inject(`/items/${id}`)))
  for (const [i, res] of hits.entries()) {
    t.equal(res.headers['x-cache'], 'HIT', `/items/${i} is a hit on B`)
    t.same(res.json(), { id: String(i), version: 1 }, `/items/${i}: B serves A's entry for that key`)
  }
  t.equal(b.calls(), 0, 'B ran no handler')
})

t.test('a server that lost the script (SCRIPT FLUSH, a restart) gets it again: no error, no bypass', async (t) => {
  const server = await startRedisServer(t)
  const redis = await client(t, server)
  const [a, b] = await twoInstances(t, server.url)
  t.equal((await a.app.inject('/items/1')).headers['x-cache'], 'MISS')
  await redis.script('FLUSH')
  const res = await Promise.all([1, 2, 3].map(async (id) => await b.app.inject(`/items/${id}`)))
  t.same(res.map((r) => r.headers['x-cache']), ['HIT', 'MISS', 'MISS'], 'B reads after the flush as before it')
  t.equal((await a.app.inject('/items/2')).headers['x-cache'], 'HIT', "A then hits B's fill")
  t.same([...a.logs, ...b.logs].filter((l) => l.level >= 40).map((l) => l.msg), [], 'nothing logged at warn or above')
})

t.test('BatchedReads: past the per-call key limit, reads split into calls and keep their own answers', async (t) => {
  const server = await startRedisServer(t)
  const redis = await client(t, server)
  const reads = new BatchedReads(redis, 5000)
  const n = 700 // 3 keys each: 2,100 keys, past the 2,000 of one call
  for (let i = 0; i < n; i += 2) await redis.set(`e${i}`, `value ${i}`)
  await redis.set('g3', 'existing guard')
  await reads.read(['warm-up', 'warm-up-g'], 100) // loads the script: the count below is of calls that run it
  const before = await scriptCalls(redis)
  const answers = await Promise.all(Array.from({ length: n }, async (_, i) => await reads.read([`e${i}`, `g${i}`, 'shared-tag'], 100)))
  t.equal(await scriptCalls(redis) - before, 2, 'two script calls')

  const created = answers[0][1]?.toString()
  t.match(created, /^[0-9a-f]{16}$/, 'a missing guard is created with a new random value')
  for (const [i, [entry, guard, tag]] of answers.entries()) {
    if (entry?.toString() !== (i % 2 === 0 ? `value ${i}` : undefined)) t.fail(`read ${i}: entry ${String(entry)}`)
    if (i !== 3 && guard?.toString() !== (await redis.get(`g${i}`))) t.fail(`read ${i}: its guard is not the one in place`)
    if (tag?.toString() !== answers[0][2]?.toString()) t.fail(`read ${i}: the shared tag guard differs`)
  }
  t.equal(answers[3][1]?.toString(), 'existing guard', 'an existing guard is read, not replaced')
  t.equal(await redis.get('g3'), 'existing guard')
  t.equal(await redis.get('shared-tag'), answers[0][2]?.toString(), 'a key asked for by every read is created once and read the same by all')
  const keyTtl = await redis.ttl('g0')
  const tagTtl = await redis.ttl('shared-tag')
  t.ok(keyTtl > 90 && keyTtl <= 100, `key guard TTL ${keyTtl} s (asked: 100)`)
  t.ok(tagTtl > 4990 && tagTtl <= 5000, `tag guard TTL ${tagTtl} s (asked: 5000)`)
  t.equal(await redis.exists('e1'), 0, 'a missing entry is not created')
})

t.test('BatchedReads: a server that is gone fails every read of the batch', async (t) => {
  const server = await startRedisServer(t)
  const redis = new Redis(server.url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null })
  t.teardown(() => redis.disconnect())
  redis.on('error', () => {})
  await redis.connect()
  const reads = new BatchedReads(redis, 5000)
  t.equal((await reads.read(['x', 'x-g'], 10)).length, 2)
  await server.kill()
  const results = await Promise.allSettled([1, 2, 3].map(async (i) => await reads.read([`k${i}`, `k${i}-g`], 10)))
  t.same(results.map((r) => r.status), ['rejected', 'rejected', 'rejected'])
})

t.test('a server out of memory (noeviction): hits batched with a miss are still served; the miss runs uncached', async (t) => {
  const server = await startRedisServer(t)
  const redis = await client(t, server)
  const [a] = await twoInstances(t, server.url)
  t.equal((await a.app.inject('/items/1')).headers['x-cache'], 'MISS')
  t.equal((await a.app.inject('/items/1')).headers['x-cache'], 'HIT')
  // Past its memory limit, with nothing it may evict: every write is refused.
  const junk = 'x'.repeat(64 * 1024)
  for (let i = 0; i < 32; i++) await redis.set(`junk:${i}`, junk)
  await redis.config('SET', 'maxmemory-policy', 'noeviction')
  await redis.config('SET', 'maxmemory', '1mb')
  await t.rejects(redis.set('probe', '1'), /OOM/, 'the server refuses writes (OOM)')
  const [hit, miss] = await Promise.all([a.app.inject('/items/1'), a.app.inject('/items/2')])
  t.equal(hit.headers['x-cache'], 'HIT', 'the hit read in the same batch as the miss is served')
  t.same(hit.json(), { id: '1', version: 1 })
  t.equal(miss.statusCode, 200, 'the miss is answered by its handler')
  t.same(miss.json(), { id: '2', version: 1 })
  t.not(miss.headers['x-cache'], 'HIT', `miss: x-cache ${String(miss.headers['x-cache'])}`)
})
