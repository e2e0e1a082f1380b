import t from 'tap'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { BackendUnavailableError } from '../lib/errors.js'
import { createFailoverStore } from '../lib/stores/failover.js'
import { createRedisStore } from '../lib/stores/redis.js'
import { startRedisServer, waitFor, type RedisServer, type Teardown } from './helpers/redis-server.js'
import { storeConformance } from './helpers/store-suite.js'

const PREFIX = 'fastify-cache'
const OP_TIMEOUT = 200
const RETRY = 200
/** Slack for a loaded CI machine on top of operationTimeout; generous on purpose. */
const MARGIN = 700
const v = (s: string): Buffer => Buffer.from(s)

interface LogLine { level: number, msg: string, backend?: string, error?: string }

/** A failover-wrapped Redis store on `server`, with its log lines kept for assertions. */
function failoverStore (t: Teardown, server: RedisServer, fallback: 'memory' | 'none' = 'memory') {
  const logs: LogLine[] = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { logs.push(JSON.parse(line)) } } } })
  t.teardown(() => app.close())
  const ctx = { keyPrefix: PREFIX, operationTimeout: OP_TIMEOUT, log: app.log }
  const primary = createRedisStore({ url: server.url, connectTimeout: 500 }, { ...ctx, fastify: app })
  const store = createFailoverStore(primary, { ...ctx, fallback, memory: { maxEntries: 100, maxBytes: 1 << 20 }, retryInterval: RETRY })
  t.teardown(() => store.close())
  return { store, logs }
}

async function otherClient (t: Teardown, server: RedisServer): Promise<Redis> {
  const client = new Redis(server.url, { lazyConnect: true })
  t.teardown(() => client.disconnect())
  await client.connect()
  return client
}

/** Resolves once `op` stops rejecting (bounded), with its result. */
async function eventually<T> (what: string, op: () => Promise<T>): Promise<T> {
  let result: T | undefined
  await waitFor(what, async () => { result = await op(); return true }, 15_000)
  return result as T
}

async function timed (op: Promise<unknown>): Promise<{ ms: number, err: unknown }> {
  const started = Date.now()
  const err = await op.then(() => undefined, (err: unknown) => err)
  return { ms: Date.now() - started, err }
}

// The wrapper must be invisible while the server is healthy.
storeConformance('failover(redis)', async () => {
  const server = await startRedisServer(undefined)
  const app = Fastify()
  const ctx = { keyPrefix: PREFIX, operationTimeout: 5000, log: app.log }
  const primary = createRedisStore({ url: server.url }, { ...ctx, fastify: app })
  const store = createFailoverStore(primary, { ...ctx, fallback: 'memory', memory: { maxEntries: 100, maxBytes: 1 << 20 } })
  await store.connect()
  return { store, keyPrefix: PREFIX, teardown: async () => { await app.close(); await server.stop() } }
}, { patterns: true })

t.test('server down at start-up: memory fallback serves, then it switches back by itself', async (t) => {
  const server = await startRedisServer(t, { start: false })
  const { store, logs } = failoverStore(t, server)
  await store.connect()
  t.equal(store.fallbackActive, true)
  t.equal(await store.ping(), false)
  await store.set(`${PREFIX}:a`, v('memory'), 60)
  t.same(await store.get(`${PREFIX}:a`), v('memory'), 'served by the memory fallback')
  t.equal(await store.delete([`${PREFIX}:a`]), 1, 'deletions apply to the fallback too')
  t.equal(await store.get(`${PREFIX}:a`), undefined)
  await store.set(`${PREFIX}:b`, v('memory'), 60)
  const warned = logs.filter((line) => line.level === 40)
  t.equal(warned.length, 1, 'one warning for the start-up failure')
  t.match(warned[0], { backend: 'redis', error: /ECONNREFUSED|127\.0\.0\.1/, msg: /start-up.*fallback/ })

  await server.start()
  await waitFor('the switch back to redis', () => !store.fallbackActive, 15_000)
  t.equal(await store.ping(), true)
  t.equal(await store.get(`${PREFIX}:b`), undefined, 'the fallback store was dropped')
  await store.set(`${PREFIX}:c`, v('redis'), 60)
  const other = await otherClient(t, server)
  t.match(await other.get(`${PREFIX}:c`), /redis$/, 'writes go to redis again')
  t.equal(logs.filter((line) => line.level === 30 && /switched back/.test(line.msg)).length, 1, 'recovery logged once at info')
})

t.test('invalidations made during the start-up fallback are replayed before redis serves', async (t) => {
  const server = await startRedisServer(t)
  // Entries as the plugin writes them (stamped with their guards; a namespace clear deletes
  // the namespace's guard rather than scanning for its keys).
  const writer = failoverStore(t, server).store
  await writer.connect()
  for (const key of ['gone', 'p:1', 'p:2', 'ns:x', 'keep']) await writer.set(`${PREFIX}:${key}`, v('before the outage'), 60)
  // Paused, the server keeps its data (a restart would lose it, with no persistence).
  server.pause()
  const { store } = failoverStore(t, server)
  await store.connect()
  t.equal(store.fallbackActive, true)
  await store.delete([`${PREFIX}:gone`])
  t.equal(await store.deletePattern(`${PREFIX}:p:*`), 0, 'nothing matched in the fallback')
  await store.clear(`${PREFIX}:ns:`)

  server.resume()
  await waitFor('the switch back to redis', () => !store.fallbackActive, 15_000)
  t.equal(await store.get(`${PREFIX}:gone`), undefined)
  t.equal(await store.get(`${PREFIX}:p:1`), undefined)
  t.equal(await store.get(`${PREFIX}:p:2`), undefined)
  t.equal(await store.get(`${PREFIX}:ns:x`), undefined)
  t.same(await store.get(`${PREFIX}:keep`), v('before the outage'), 'nothing else was flushed')
})

t.test('too many missed invalidations collapse into clearing our prefix, and only it', async (t) => {
  const server = await startRedisServer(t)
  const other = await otherClient(t, server)
  await other.set(`${PREFIX}:keep`, 'ours')
  await other.set('foreign:key', 'theirs')
  server.pause()
  const { store, logs } = failoverStore(t, server)
  await store.connect()
  await store.delete(Array.from({ length: 1001 }, (_, i) => `${PREFIX}:k:${i}`))
  t.ok(logs.some((line) => line.level === 40 && /too many invalidations/.test(line.msg)))
  server.resume()
  await waitFor('the switch back to redis', () => !store.fallbackActive, 15_000)
  t.equal(await other.exists(`${PREFIX}:keep`), 0, 'everything under the prefix was cleared')
  t.equal(await other.get('foreign:key'), 'theirs', 'foreign keys were not')
})

t.test('SIGSTOP mid-run: bounded rejections, then an open circuit, then recovery on SIGCONT', async (t) => {
  const server = await startRedisServer(t)
  const { store, logs } = failoverStore(t, server)
  await store.connect()
  t.equal(store.fallbackActive, false)
  await store.set(`${PREFIX}:a`, v('1'), 60)

  server.pause()
  for (let i = 0; i < 3; i++) {
    const { ms, err } = await timed(store.get(`${PREFIX}:a`))
    t.ok(err instanceof BackendUnavailableError, `rejects with BackendUnavailableError: ${String(err)}`)
    t.ok(ms >= OP_TIMEOUT - 20 && ms < OP_TIMEOUT + MARGIN, `within operationTimeout + margin (${ms} ms)`)
  }
  const { ms, err } = await timed(store.get(`${PREFIX}:a`))
  t.match(err, { name: 'BackendUnavailableError', message: /circuit open/ })
  t.ok(ms < 50, `the open circuit rejects at once (${ms} ms)`)
  t.equal(await store.ping(), false)
  t.equal(store.fallbackActive, false, 'an outage after start-up is not a fallback')
  const opened = logs.filter((line) => line.level === 40 && /circuit opened/.test(line.msg))
  t.equal(opened.length, 1, 'circuit opening logged once')
  t.match(opened[0], { backend: 'redis', error: /200 ms/ })

  server.resume()
  t.same(await eventually('reads to succeed again', () => store.get(`${PREFIX}:a`)), v('1'))
  t.equal(await store.ping(), true)
  t.equal(logs.filter((line) => line.level === 30 && /circuit closed/.test(line.msg)).length, 1)
})

t.test('kill and restart on the same port: recovers by itself', async (t) => {
  const server = await startRedisServer(t)
  const { store } = failoverStore(t, server)
  await store.connect()
  await store.set(`${PREFIX}:a`, v('1'), 60)
  await server.kill()
  for (let i = 0; i < 3; i++) {
    const { ms, err } = await timed(store.get(`${PREFIX}:a`))
    t.ok(err instanceof BackendUnavailableError, String(err))
    t.ok(ms < OP_TIMEOUT + MARGIN, `a dead server fails fast (${ms} ms)`)
  }
  await t.rejects(store.set(`${PREFIX}:a`, v('2'), 60), /circuit open/)
  await server.restart()
  await eventually('writes to succeed again', () => store.set(`${PREFIX}:b`, v('2'), 60))
  t.same(await store.get(`${PREFIX}:b`), v('2'))
  t.equal(await store.get(`${PREFIX}:a`), undefined, 'the restarted server lost its data, as it should')
  t.equal(await store.ping(), true)
})

t.test('a deletePattern during a runtime outage is replayed before reads succeed again', async (t) => {
  const server = await startRedisServer(t)
  const other = await otherClient(t, server)
  const { store } = failoverStore(t, server)
  await store.connect()
  for (const key of ['w:1', 'w:2', 'keep']) await store.set(`${PREFIX}:${key}`, v('old'), 60)

  server.pause()
  for (let i = 0; i < 3; i++) await t.rejects(store.get(`${PREFIX}:keep`))
  // The circuit is open: this never reaches the server, only the replay can delete.
  await t.rejects(store.deletePattern(`${PREFIX}:w:*`), /circuit open/)
  server.resume()

  t.same(await eventually('reads to succeed again', () => store.get(`${PREFIX}:keep`)), v('old'))
  t.equal(await store.get(`${PREFIX}:w:1`), undefined, 'replayed before the first successful read')
  t.equal(await other.exists(`${PREFIX}:w:1`, `${PREFIX}:w:2`), 0)
})

t.test('a failed delete holds reads back until it is replayed, even without an open circuit', async (t) => {
  const server = await startRedisServer(t)
  const { store } = failoverStore(t, server)
  await store.connect()
  await store.set(`${PREFIX}:a`, v('old'), 60)
  server.pause()
  await t.rejects(store.delete([`${PREFIX}:a`]), /no answer within 200 ms/)
  await t.rejects(store.get(`${PREFIX}:a`), /held back/, 'rejected without asking the server')
  server.resume()
  // The paused delete itself runs on SIGCONT too; either way no read may return the old value.
  const seen = await eventually('reads to succeed again', () => store.get(`${PREFIX}:a`))
  t.equal(seen, undefined)
})

t.test("fallback 'none': everything rejects until the server comes, then it works", async (t) => {
  const server = await startRedisServer(t, { start: false })
  const { store, logs } = failoverStore(t, server, 'none')
  await store.connect()
  t.equal(store.fallbackActive, false, 'no fallback store is serving')
  t.equal(await store.ping(), false)
  await t.rejects(store.get(`${PREFIX}:a`), BackendUnavailableError)
  await t.rejects(store.set(`${PREFIX}:a`, v('x'), 60), BackendUnavailableError)
  await t.rejects(store.delete([`${PREFIX}:a`]), BackendUnavailableError)
  t.match(logs.find((line) => line.level === 40), { msg: /running uncached/ })

  await server.start()
  await eventually('writes to succeed', () => store.set(`${PREFIX}:a`, v('x'), 60))
  t.same(await store.get(`${PREFIX}:a`), v('x'))
  t.equal(await store.ping(), true)
})
