import t from 'tap'
import rateLimit from '@fastify/rate-limit'
import Fastify from 'fastify'
import serverCache from '../index.js'

// The lookup runs in preParsing, after every onRequest hook: @fastify/rate-limit (which adds
// its onRequest hook per route) counts cached hits whichever plugin is registered first.
for (const order of ['cache first', 'rate-limit first'] as const) {
  t.test(`cached hits count against the rate limit (${order})`, async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    const registerCache = () => app.register(serverCache, { keyPrefix: `rl-${Math.random()}` })
    const registerLimit = () => app.register(rateLimit, { max: 3, timeWindow: 60_000 })
    if (order === 'cache first') { await registerCache(); await registerLimit() } else { await registerLimit(); await registerCache() }
    let calls = 0
    app.get('/w/:id', { config: { cache: { keyPrefix: 'w' } } }, async () => { calls++; return { ok: true } })

    const outcomes = []
    for (let i = 0; i < 5; i++) {
      const res = await app.inject('/w/1')
      outcomes.push(`${res.statusCode} ${res.headers['x-cache'] ?? '-'}`)
    }
    t.same(outcomes, ['200 MISS', '200 HIT', '200 HIT', '429 -', '429 -'])
    t.equal(calls, 1)
  })
}

t.test('an onRequest access check runs before a cached hit is served', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(serverCache, { keyPrefix: `auth-${Math.random()}` })
  app.get('/private/:id', {
    onRequest: async (request, reply) => { if (request.headers.authorization !== 'ok') return reply.code(401).send() },
    config: { cache: { keyPrefix: 'private', vary: ['authorization'] } },
  }, async () => ({ secret: 1 }))
  t.equal((await app.inject({ url: '/private/1', headers: { authorization: 'ok' } })).statusCode, 200)
  t.equal((await app.inject({ url: '/private/1', headers: { authorization: 'ok' } })).headers['x-cache'], 'HIT')
  t.equal((await app.inject('/private/1')).statusCode, 401)
})
