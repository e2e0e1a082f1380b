// Type tests: compiled by `npm run test:types` against the published declarations (dist/),
// through the package's own name, as a user would import it. Every `@ts-expect-error` must be
// an error, or the compile fails: a wrong field type is a compile error for users.
import Fastify from 'fastify'
import serverCache, { serverCache as named, cacheOptionsFromEnv, CacheError, CacheConfigurationError, InvalidRequestError, PatternMatchingNotSupportedError, BackendUnavailableError, type CacheStats, type ServerCacheOptions, type RouteCacheConfig } from 'fastify-server-cache'

function expectType<T> (_value: T): void {}

const app = Fastify()
await app.register(serverCache, { backend: 'redis', redis: { url: 'redis://127.0.0.1:7000' }, defaultExpiration: 60 })
await app.register(named, cacheOptionsFromEnv())
// @ts-expect-error backend is a closed set
await app.register(serverCache, { backend: 'mongo' })
// @ts-expect-error defaultExpiration is a number
await app.register(serverCache, { defaultExpiration: '60' })
// @ts-expect-error unknown option
await app.register(serverCache, { nope: 1 })
await app.register(serverCache, { maxEntryBytes: 1024, cacheStatus: true, metrics: { prefix: 'shop_cache_' } })
await app.register(serverCache, { metrics: false })
// @ts-expect-error metrics.registry is a prom-client Registry
await app.register(serverCache, { metrics: { registry: 'default' } })
// @ts-expect-error cacheStatus is a boolean
await app.register(serverCache, { cacheStatus: 'on' })

app.get('/widgets/:widgetId', {
  config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', expiration: 600, vary: ['authorization'], statusCodes: [200, 404] } },
}, async () => ({}))
app.get('/fn', { config: { cache: { keyPrefix: (request) => `fn_${request.url}`, resourceIdName: null } } }, async () => ({}))
app.patch('/widgets/:widgetId', {
  config: { cache: { keyPrefix: 'widget', toInvalidateExtra: { user_widgets: '{ownerId}' }, patternToInvalidateExtra: ['user_{ownerId}_widgets:*'] } },
}, async () => ({}))
app.get('/owners/:ownerId/widgets', { config: { cache: { keyPrefix: 'user_{ownerId}_widgets', resourceIdName: null, tags: ['owner:{ownerId}', 'widgets'] } } }, async () => ({}))
app.post('/owners/:ownerId/widgets', { config: { cache: { keyPrefix: 'w', invalidateTags: ['owner:{ownerId}'], invalidateNamespaces: ['user_{ownerId}_widgets'] } } }, async () => ({}))
// @ts-expect-error tags are strings
app.get('/bad4', { config: { cache: { keyPrefix: 'x', tags: [1] } } }, async () => ({}))
// @ts-expect-error invalidateNamespaces is an array
app.post('/bad5', { config: { cache: { keyPrefix: 'x', invalidateNamespaces: 'ns' } } }, async () => ({}))
// @ts-expect-error expiration is a number
app.get('/bad1', { config: { cache: { keyPrefix: 'x', expiration: '600' } } }, async () => ({}))
// @ts-expect-error keyPrefix is required
app.get('/bad2', { config: { cache: { expiration: 600 } } }, async () => ({}))
// @ts-expect-error resourceIdType is 'integer' | 'string'
app.get('/bad3', { config: { cache: { keyPrefix: 'x', resourceIdType: 'uuid' } } }, async () => ({}))

expectType<Promise<unknown>>(app.cache.get('k'))
expectType<Promise<{ a: number } | undefined>>(app.cache.get<{ a: number }>('k', { namespace: 'ns' }))
expectType<Promise<void>>(app.cache.set('k', { a: 1 }, { expiration: 10, namespace: 'ns', backendName: 'other' }))
expectType<Promise<number>>(app.cache.delete(['a', 'b']))
expectType<Promise<number>>(app.cache.deletePattern('a*'))
expectType<Promise<boolean>>(app.cache.exists('k'))
expectType<Promise<number>>(app.cache.ttl('k'))
expectType<Promise<boolean>>(app.cache.expire('k', 10))
expectType<Promise<void>>(app.cache.clear({ namespace: 'ns' }))
expectType<Promise<{ n: number }>>(app.cache.getOrSet('k', async () => ({ n: 1 }), { forceRefresh: true }))
expectType<Promise<void>>(app.cache.set('k', 1, { tags: ['owner:7'] }))
expectType<Promise<number>>(app.cache.getOrSet('k', () => 1, { tags: ['a', 'b'] }))
expectType<Promise<void>>(app.cache.invalidateTags('owner:7'))
expectType<Promise<void>>(app.cache.invalidateTags(['a', 'b'], { backendName: 'other' }))
// @ts-expect-error tags are strings
await app.cache.set('k', 1, { tags: [7] })
expectType<Promise<boolean>>(app.cache.ping())
expectType<CacheStats>(app.cache.stats())
expectType<number>(app.cache.stats().routes['widget'].hits)
// @ts-expect-error stats() is synchronous
expectType<Promise<CacheStats>>(app.cache.stats())
// @ts-expect-error expiration is a number
await app.cache.set('k', 1, { expiration: 'soon' })

const err: CacheError = new CacheConfigurationError('x')
expectType<string>(err.code)
expectType<CacheError[]>([new InvalidRequestError('x'), new PatternMatchingNotSupportedError('x'), new BackendUnavailableError('x')])
expectType<ServerCacheOptions['backend']>('memcached')
expectType<RouteCacheConfig['keyPrefix']>('k')
