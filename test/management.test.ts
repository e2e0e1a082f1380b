import t from 'tap'
import { withCache } from './helpers/app.js'

const guard = async (request: any, reply: any) => {
  if (request.headers['x-admin'] !== 'yes') return reply.code(401).send({ error: 'unauthorized' })
}

t.test('management routes run the access check and do what they say', async (t) => {
  const { app } = await withCache({ managementRoutes: { onRequest: guard } })
  t.teardown(() => app.close())
  const admin = { 'x-admin': 'yes' }
  for (const [method, url] of [['GET', '/cache/stats'], ['GET', '/cache/ping'], ['DELETE', '/cache/clear'], ['DELETE', '/cache/clear/users'], ['POST', '/cache/reset-stats']] as const) {
    t.equal((await app.inject({ method, url })).statusCode, 401, `${method} ${url} refuses without the check passing`)
  }
  await app.cache.set('k', 1, { namespace: 'users' })
  await app.cache.set('k', 1, { namespace: 'posts' })
  await app.cache.get('k')
  const stats = await app.inject({ url: '/cache/stats', headers: admin })
  t.match(stats.json(), { backend: 'memory', misses: 1, sets: 2 })
  const ping = await app.inject({ url: '/cache/ping', headers: admin })
  t.equal(ping.statusCode, 200)
  t.same(ping.json(), { ok: true, backend: 'memory', fallbackActive: false })
  t.equal((await app.inject({ method: 'DELETE', url: '/cache/clear/users', headers: admin })).statusCode, 200)
  t.equal(await app.cache.exists('k', { namespace: 'users' }), false)
  t.equal(await app.cache.exists('k', { namespace: 'posts' }), true)
  t.equal((await app.inject({ method: 'DELETE', url: '/cache/clear/a:b', headers: admin })).statusCode, 400, 'a bad namespace is a 400')
  t.equal((await app.inject({ method: 'DELETE', url: '/cache/clear', headers: admin })).statusCode, 200)
  t.equal(await app.cache.exists('k', { namespace: 'posts' }), false)
  t.equal((await app.inject({ method: 'POST', url: '/cache/reset-stats', headers: admin })).statusCode, 200)
  t.equal(app.cache.stats().misses, 0)
})

t.test('a custom prefix, an array of hooks, and allowUnauthenticated', async (t) => {
  const calls: string[] = []
  const { app } = await withCache({
    managementRoutes: { prefix: '/admin/cache/', onRequest: [async () => { calls.push('a') }, async () => { calls.push('b') }] },
  })
  t.teardown(() => app.close())
  t.equal((await app.inject('/admin/cache/stats')).statusCode, 200)
  t.same(calls, ['a', 'b'])
  const open = await withCache({ managementRoutes: { allowUnauthenticated: true } })
  t.teardown(() => open.app.close())
  t.equal((await open.app.inject('/cache/ping')).statusCode, 200)
  const none = await withCache()
  t.teardown(() => none.app.close())
  t.equal((await none.app.inject('/cache/stats')).statusCode, 404, 'no management routes by default')
})
