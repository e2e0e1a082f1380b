import type { FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { Engine, type ManagedStore } from './lib/engine.js'
import { managementRoutes } from './lib/management.js'
import { CacheMetrics, label } from './lib/metrics.js'
import { resolveOptions } from './lib/options.js'
import { createProvider, type CacheProvider } from './lib/provider.js'
import { kState } from './lib/request-state.js'
import { cacheRoutes } from './lib/route-cache.js'
import type { RouteCacheConfig, ServerCacheOptions } from './lib/schemas.js'
import { createStore } from './lib/stores/create.js'

const plugin: FastifyPluginAsync<ServerCacheOptions> = async function serverCache (fastify, options) {
  const opts = resolveOptions(options)

  // prom-client is loaded only when metrics are asked for.
  const metrics = opts.metrics === false ? undefined : new CacheMetrics(await import('prom-client'), opts.metrics)
  const stores = new Map<string, ManagedStore>()
  fastify.addHook('onClose', async () => {
    await Promise.all([...stores.values()].map((s) => s.close()))
  })
  if (opts.enabled) {
    for (const [name, spec] of opts.backends) stores.set(name, createStore(spec, opts, fastify, metrics?.observer(label(name, { kind: spec.backend }))))
    // Remote stores resolve connect() even when their server is down (start-up fallback).
    await Promise.all([...stores.values()].map((s) => s.connect()))
  }

  const engine = new Engine(opts, stores, fastify.log)
  metrics?.attach(engine, stores)
  const cache = createProvider(engine)
  fastify.decorate('cache', cache)
  fastify.decorateRequest(kState, null)
  const unmatchable: string[] = []
  fastify.addHook('onRoute', cacheRoutes(engine, unmatchable))
  fastify.addHook('onReady', async () => {
    if (unmatchable.length === 0) return
    fastify.log.warn({ routes: unmatchable }, `Cache: patternToInvalidateExtra cannot work on Memcached (no pattern matching); these routes only delete their plain keys: ${unmatchable.join('; ')}`)
  })
  if (opts.managementRoutes) managementRoutes(fastify, cache, engine.backend, opts.managementRoutes, metrics?.own === true ? metrics.registry : undefined)
}

/** The plugin: `app.register(serverCache, options)`. */
export const serverCache = fp(plugin, { fastify: '5.x', name: 'fastify-server-cache' })
export default serverCache

export { cacheOptionsFromEnv } from './lib/env.js'
export { CacheError, CacheConfigurationError, InvalidRequestError, PatternMatchingNotSupportedError, BackendUnavailableError } from './lib/errors.js'
export type { CacheProvider, CacheCallOptions, SetOptions, GetOrSetOptions } from './lib/provider.js'
export type { CacheStats } from './lib/stats.js'
export type { ServerCacheOptions, RouteCacheConfig, RedisOptions, MemcachedOptions, MemoryOptions, BackendSpec, ManagementRoutesOptions } from './lib/schemas.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The cache provider of fastify-server-cache. */
    cache: CacheProvider
  }
  interface FastifyContextConfig {
    /** Cache this route's responses (GET) or invalidate on success (POST/PUT/PATCH/DELETE). */
    cache?: RouteCacheConfig
  }
}
