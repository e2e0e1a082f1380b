import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyRedis from '@fastify/redis'
import { Redis } from 'ioredis'
import { createRedisStore } from '../lib/stores/redis.js'
import type { RedisOptions } from '../lib/schemas.js'
import { BackendUnavailableError } from '../lib/errors.js'
import { freePort, rawCommand, startRedisServer, type Teardown } from './helpers/redis-server.js'
import { storeConformance } from './helpers/store-suite.js'

const PREFIX = 'fastify-cache'

/** A store the test owns; `fastify` is a bare app, closed at teardown. */
async function redisStore (t: Teardown, options: RedisOptions | undefined, fastify?: FastifyInstance): Promise<ReturnType<typeof createRedisStore>> {
  const app = fastify ?? Fastify()
  t.teardown(() => app.close())
  const store = createRedisStore(options, { keyPrefix: PREFIX, operationTimeout: 1000, log: app.log, fastify: app })
  t.teardown(() => store.close())
  return store
}

/** A separate client, as another program sharing the server would use. */
async function otherClient (t: Teardown, url: string): Promise<Redis> {
  const client = new Redis(url, { lazyConnect: true })
  t.teardown(() => client.disconnect())
  await client.connect()
  return client
}

storeConformance('redis', async () => {
  const server = await startRedisServer(undefined)
  const app = Fastify()
  const store = createRedisStore({ url: server.url }, { keyPrefix: PREFIX, operationTimeout: 1000, log: app.log, fastify: app })
  await store.connect()
  return { store, keyPrefix: PREFIX, teardown: async () => { await app.close(); await server.stop() } }
}, { patterns: true })

t.test('set/get keep bytes and expiry, add is SET NX', async (t) => {
  const server = await startRedisServer(t)
  const store = await redisStore(t, { url: server.url })
  await store.connect()
  const value = Buffer.from([0, 1, 2, 255])
  await store.set(`${PREFIX}:a`, value, 60)
  t.same(await store.get(`${PREFIX}:a`), value)
  const ttl = await store.ttl(`${PREFIX}:a`)
  t.ok(ttl > 0 && ttl <= 60, `ttl ${ttl} set with the value`)
  t.equal(await store.add(`${PREFIX}:a`, Buffer.from('x'), 60), false)
  t.equal(await store.add(`${PREFIX}:b`, Buffer.from('x'), 60), true)
  t.equal(await store.get(`${PREFIX}:missing`), undefined)
  t.equal(await store.ping(), true)
})

t.test('clear() and deletePattern() leave keys outside the prefix alone', async (t) => {
  const server = await startRedisServer(t)
  const other = await otherClient(t, server.url)
  const store = await redisStore(t, { url: server.url })
  await store.connect()
  // Glob characters in the prefix must match literally: `pre*fix:` is not a pattern.
  const prefix = 'pre*fix:'
  for (const key of [`${prefix}a`, `${prefix}ns:b`]) await store.set(key, Buffer.from('v'), 60)
  const foreign = ['preXXfix:a', 'pre*fixa', 'foreign:key', `${PREFIX}-other:a`]
  for (const key of foreign) await other.set(key, 'theirs')

  await store.clear(prefix)
  t.equal(await other.exists(`${prefix}a`, `${prefix}ns:b`), 0, 'our keys are gone')
  t.equal(await other.exists(...foreign), foreign.length, 'foreign keys are intact')

  for (let i = 0; i < 1200; i++) await store.set(`${PREFIX}:w:${i}`, Buffer.from('v'), 60)
  await store.set(`${PREFIX}:keep`, Buffer.from('v'), 60)
  t.equal(await store.deletePattern(`${PREFIX}:w:*`), 1200, 'more matches than one SCAN batch')
  // The kept key and its guard, and the guard of the `w:` namespace (see lib/stores/redis.ts):
  // every other key and key guard is gone.
  t.equal(await other.dbsize(), foreign.length + 3)
})

t.test('deletePattern and clear work where KEYS is disabled', async (t) => {
  const server = await startRedisServer(t, { args: ['--rename-command', 'KEYS', ''] })
  await t.rejects(rawCommand(server.port, ['KEYS', '*']), /unknown command/, 'KEYS is really gone')
  const store = await redisStore(t, { url: server.url })
  await store.connect()
  for (const key of ['w:1', 'w:2', 'ns:a', 'ns:b', 'keep']) await store.set(`${PREFIX}:${key}`, Buffer.from('v'), 60)
  t.equal(await store.deletePattern(`${PREFIX}:w:*`), 2)
  await store.clear(`${PREFIX}:ns:`)
  t.equal(await store.exists(`${PREFIX}:ns:a`), false)
  t.equal(await store.exists(`${PREFIX}:keep`), true)
  await store.clear(`${PREFIX}:`)
  t.equal(await store.exists(`${PREFIX}:keep`), false)
})

t.test('foreign data under our key is handed up as bytes, not decoded or thrown', async (t) => {
  const server = await startRedisServer(t)
  const other = await otherClient(t, server.url)
  const store = await redisStore(t, { url: server.url })
  await store.connect()
  const garbage = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x7b])
  await other.set(`${PREFIX}:garbage`, garbage)
  t.same(await store.get(`${PREFIX}:garbage`), garbage, 'invalid UTF-8 comes back byte for byte')
  // A hash is not a string: the MGET that reads an entry with its guard answers nil for it, so
  // it reads as a miss (never an outage), and the next fill's SET replaces it.
  await other.hset(`${PREFIX}:hash`, 'f', 'v')
  t.same(await store.get(`${PREFIX}:hash`), undefined)
  t.equal(await store.delete([`${PREFIX}:hash`]), 1)
})

t.test('connection options: url with db, host/port/db, and an unreachable server', async (t) => {
  const server = await startRedisServer(t)
  const other = await otherClient(t, server.url)

  const byUrl = await redisStore(t, { url: `${server.url}/2` })
  await byUrl.connect()
  await byUrl.set(`${PREFIX}:url`, Buffer.from('v'), 60)
  const byHost = await redisStore(t, { host: '127.0.0.1', port: server.port, db: 3 })
  await byHost.connect()
  await byHost.set(`${PREFIX}:host`, Buffer.from('v'), 60)
  await other.select(2)
  t.equal(await other.exists(`${PREFIX}:url`), 1, 'url db 2')
  await other.select(3)
  t.equal(await other.exists(`${PREFIX}:host`), 1, 'db option 3')

  const port = await freePort()
  const down = await redisStore(t, { host: '127.0.0.1', port, connectTimeout: 1000 })
  const started = Date.now()
  const err = await down.connect().then(() => undefined, (err: unknown) => err)
  t.ok(err instanceof BackendUnavailableError, 'rejects with BackendUnavailableError')
  t.match((err as Error).message, `127.0.0.1:${port}`, 'naming the address')
  t.ok(Date.now() - started < 3000, 'within connectTimeout')
  t.equal(await down.ping(), false)
  await t.rejects(down.get(`${PREFIX}:x`), 'a disconnected client fails fast instead of queueing')
})

t.test('connect() gives up after connectTimeout on a server that does not answer', async (t) => {
  const server = await startRedisServer(t)
  server.pause()
  const store = await redisStore(t, { url: server.url, connectTimeout: 500 })
  const started = Date.now()
  await t.rejects(store.connect(), /connectTimeout/)
  t.ok(Date.now() - started < 2500, `rejected after ${Date.now() - started} ms`)
  server.resume()
})

t.test('a client passed in is used as is and still open after close()', async (t) => {
  const server = await startRedisServer(t)
  const client = await otherClient(t, server.url)
  const store = await redisStore(t, { client })
  await store.connect()
  await store.set(`${PREFIX}:mine`, Buffer.from('v'), 60)
  // Stored through the client we passed (the value carries its guard's tag in front).
  t.match(await client.get(`${PREFIX}:mine`), /v$/)
  await store.close()
  t.equal(client.status, 'ready')
  t.equal(await client.ping(), 'PONG')
})

t.test('fastify.redis from @fastify/redis is reused when no redis option is given, and not closed', async (t) => {
  const server = await startRedisServer(t)
  const app = Fastify()
  // db 5 of our server: a client built from (absent) options would talk to localhost:6379 db 0.
  await app.register(fastifyRedis, { url: `${server.url}/5` })
  await app.ready()
  const store = await redisStore(t, undefined, app)
  await store.connect()
  await store.set(`${PREFIX}:shared`, Buffer.from('v'), 60)
  const decorated = (app as unknown as { redis: Redis }).redis
  t.match(await decorated.get(`${PREFIX}:shared`), /v$/)
  await store.close()
  t.equal(decorated.status, 'ready', 'still open after store.close()')
  t.equal(await decorated.ping(), 'PONG')
})

t.test('a client the store created is closed by close()', async (t) => {
  const server = await startRedisServer(t)
  const other = await otherClient(t, server.url)
  const store = await redisStore(t, { url: server.url })
  await store.connect()
  const clientsBefore = (await other.client('LIST') as string).trim().split('\n').length
  await store.close()
  let clientsAfter = clientsBefore
  for (let i = 0; i < 40 && clientsAfter === clientsBefore; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    clientsAfter = (await other.client('LIST') as string).trim().split('\n').length
  }
  t.equal(clientsAfter, clientsBefore - 1, 'its connection is gone from CLIENT LIST')
})
