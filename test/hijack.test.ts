import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { withCache } from './helpers/app.js'
import { startRedisServer } from './helpers/redis-server.js'

// Waiters wait at most 10 s for a leader (and a lease holder's peers up to lease.wait): a
// request still pending after HELD ms was held by a fill that never came.
const HELD = 5000

function within<T> (promise: Promise<T>, what: string): Promise<T> {
  return Promise.race([promise, sleep(HELD, undefined, { ref: false }).then(() => { throw new Error(`${what}: still waiting after ${HELD} ms`) })])
}

function hijacking (app: FastifyInstance, counter: { calls: number }): void {
  app.get('/raw/:id', { config: { cache: { keyPrefix: 'raw' } } }, async (_request, reply) => {
    counter.calls++
    reply.hijack()
    await sleep(100)
    reply.raw.writeHead(200, { 'content-type': 'text/plain' })
    reply.raw.end('written by hand')
  })
}

t.test('a hijacked reply never holds the requests waiting on its key', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  const counter = { calls: 0 }
  hijacking(app, counter)
  const all = await within(Promise.all(Array.from({ length: 5 }, () => app.inject('/raw/1'))), 'concurrent hijacked requests')
  t.ok(all.every((r) => r.statusCode === 200 && r.body === 'written by hand'))
  t.equal(counter.calls, 5, 'each waiter ran the handler once the leader had ended')
  const next = await within(app.inject('/raw/1'), 'the next request')
  t.equal(next.body, 'written by hand')
})

t.test('redis, two instances with the lease: a hijacked leader releases its lease when its response ends', async (t) => {
  const { url } = await startRedisServer(t)
  const keyPrefix = `hj-${Math.random().toString(36).slice(2)}`
  const counter = { calls: 0 }
  const [a, b] = await Promise.all([0, 1].map(async () => {
    const { app } = await withCache({ backend: 'redis', redis: { url }, keyPrefix, lease: { ttl: 30_000, wait: 20_000, poll: 20 } })
    t.teardown(() => app.close())
    hijacking(app, counter)
    return app
  }))
  const first = a.inject('/raw/1')
  await sleep(30)
  const second = await within(b.inject('/raw/1'), 'the other instance')
  t.equal(second.body, 'written by hand')
  t.equal((await first).body, 'written by hand')
  t.equal(counter.calls, 2)
})

t.test('a client that goes away before its response never holds the requests waiting on its key', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let calls = 0
  app.get('/slow/:id', { config: { cache: { keyPrefix: 'slow' } } }, async () => {
    calls++
    await sleep(300)
    return { calls }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const leader = httpRequest({ host: '127.0.0.1', port, path: '/slow/1' })
  leader.on('error', () => {})
  leader.end()
  await sleep(50)
  const waiter = within(app.inject('/slow/1'), 'the waiter')
  await sleep(50)
  leader.destroy()
  const res = await waiter
  t.equal(res.statusCode, 200)
  t.ok(calls >= 1)
  await sleep(400)
  const after = await app.inject('/slow/1')
  t.equal(after.statusCode, 200)
  t.equal(after.headers['x-cache'], 'HIT', 'a response was stored for the key')
})

t.test('a handler writing to reply.raw without hijacking never holds waiters', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let calls = 0
  app.get('/direct/:id', { config: { cache: { keyPrefix: 'direct' } } }, async (_request, reply) => {
    calls++
    await sleep(100)
    reply.raw.writeHead(200, { 'content-type': 'text/plain' })
    reply.raw.end('direct')
    return reply
  })
  const all = await within(Promise.all(Array.from({ length: 3 }, () => app.inject('/direct/1'))), 'raw writers')
  t.ok(all.every((r) => r.body === 'direct'))
  t.equal(calls, 3)
})
