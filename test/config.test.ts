import t from 'tap'
import Fastify from 'fastify'
import serverCache, { CacheConfigurationError, InvalidRequestError } from '../index.js'
import { withCache } from './helpers/app.js'

t.test('invalid plugin options fail register naming the option and the value', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ backend: 'mongo' }, /^backend: expected 'memory' \| 'redis' \| 'memcached', got 'mongo'$/],
    [{ defaultExpiration: 0 }, /^defaultExpiration: expected an integer >= 1, got 0$/],
    [{ defaultExpiration: 100, maxExpiration: 10 }, /defaultExpiration: 100 is above maxExpiration \(10\)/],
    [{ memory: { maxEntries: 'many' } }, /^memory\.maxEntries: expected an integer >= 1, got 'many'$/],
    [{ keyPrefix: '' }, /^keyPrefix: expected a non-empty string, got ''$/],
    [{ nope: true }, /^nope: unknown option$/],
    [{ cacheHeader: true }, /^cacheHeader: expected a valid header name \| false, got true$/],
    [{ managementRoutes: {} }, /managementRoutes: an onRequest access check is required/],
    [{ backends: { b: { backend: 'x' } } }, /^backends\.b\.backend: expected/],
    [{ fallback: 'redis' }, /^fallback: expected 'memory' \| 'none', got 'redis'$/],
    [{ lease: { wait: 0 } }, /^lease\.wait: expected an integer >= 1, got 0$/],
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    const err = await app.register(serverCache, options as never).ready().then(() => null, (e) => e)
    t.ok(err instanceof CacheConfigurationError, `${JSON.stringify(options)} → CacheConfigurationError`)
    t.match(err?.message, message)
    t.equal(err?.code, 'FST_CACHE_CONFIGURATION')
    await app.close()
  }
})

t.test('invalid route config fails when the route is registered, naming route and field', async (t) => {
  const { app } = await withCache({ maxExpiration: 100, defaultExpiration: 50 })
  t.teardown(() => app.close())
  const register = (method: 'get' | 'patch', url: string, cache: unknown) => {
    try {
      app[method](url, { config: { cache: cache as never } }, async () => 'x')
      return null
    } catch (err) {
      return err as Error & { code: string }
    }
  }
  let err = register('get', '/a', { keyPrefix: 'a', expiration: 'long' })
  t.ok(err instanceof CacheConfigurationError)
  t.match(err?.message, /^config\.cache of GET \/a: expiration: expected an integer >= 1, got 'long'$/)
  err = register('get', '/b', { resourceIdName: 'id' })
  t.match(err?.message, /config\.cache of GET \/b: keyPrefix: is required/)
  err = register('get', '/c', { keyPrefix: 'c', expiration: 1000 })
  t.match(err?.message, /expiration: 1000 is above maxExpiration \(100\)/)
  err = register('get', '/d', { keyPrefix: 'd', toInvalidateExtra: { x: 'y' } })
  t.ok(err instanceof InvalidRequestError, 'invalidation fields on a GET route')
  err = register('get', '/e', { keyPrefix: 'e', backendName: 'nope' })
  t.match(err?.message, /backendName: 'nope' is not one of the configured backends/)
  err = register('patch', '/f', { keyPrefix: 'f_{a', patternToInvalidateExtra: ['x'] })
  t.match(err?.message, /unbalanced or empty placeholder in 'f_\{a'/)
  err = register('get', '/g', { keyPrefix: 'g', vary: ['bad header'] })
  t.match(err?.message, /vary\[0\]: expected a valid header name/)
})

t.test('a route without config.cache carries no hook of ours', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  const seen = new Map<string, unknown[]>()
  app.addHook('onRoute', (route) => {
    const hooks = [route.onRequest, route.preParsing, route.preValidation, route.preHandler, route.onSend].flat().filter(Boolean)
    seen.set(`${route.method} ${route.url}`, hooks)
  })
  app.get('/plain', async () => 'x')
  app.get('/cached', { config: { cache: { keyPrefix: 'c' } } }, async () => 'x')
  t.same(seen.get('GET /plain'), [])
  t.equal(seen.get('GET /cached')?.length, 2, 'lookup (preHandler) and fill (onSend) on the cached route only; no payload capture without other onSend hooks')
  const res = await app.inject('/plain')
  t.equal(res.headers['x-cache'], undefined)
})

t.test('invalidateNamespaces and tags errors say what a namespace or a tag must be', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  const error = (fn: () => unknown): Error | undefined => { try { fn() } catch (err) { return err as Error } }
  const bad = error(() => app.patch('/ns', { config: { cache: { keyPrefix: 'x', invalidateNamespaces: ['a:b'] } } }, async () => ({})))
  t.equal(bad?.message, "config.cache of PATCH /ns: invalidateNamespaces[0]: expected a non-empty namespace template without ':', got 'a:b'")
  const tag = error(() => app.get('/tag', { config: { cache: { keyPrefix: 'x', tags: ['ok', 7 as unknown as string] } } }, async () => ({})))
  t.match(tag?.message, /^config\.cache of GET \/tag: tags\[1\]: expected /)
})
