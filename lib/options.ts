import type { onRequestHookHandler } from 'fastify'
import { CacheConfigurationError } from './errors.js'
import { PluginOptionsSchema, type BackendSpec, type ServerCacheOptions } from './schemas.js'
import { validate } from './validate.js'

/** Plugin options after validation, with every default applied. Never the caller's objects. */
export interface ResolvedOptions {
  enabled: boolean
  defaultExpiration: number
  maxExpiration: number
  keyPrefix: string
  compression: { enabled: boolean, threshold: number }
  maxEntryBytes: number
  statistics: boolean
  fallback: 'memory' | 'none'
  operationTimeout: number
  lease: false | { ttl: number, wait: number, poll: number }
  cacheHeader: string | false
  cacheStatus: boolean
  metrics: false | { registry?: import('prom-client').Registry, prefix: string }
  /** The default store is '' in this map; named `backends` follow. */
  backends: Map<string, Required<Pick<BackendSpec, 'backend'>> & BackendSpec & { memory: { maxEntries: number, maxBytes: number } }>
  managementRoutes: false | { prefix: string, onRequest: onRequestHookHandler[] }
  /** Cross-instance guards on (see stores/store.ts); only the internal kUnguarded turns them off. */
  guarded: boolean
}

/**
 * Internal switch, not part of the API: `{ [kUnguarded]: true }` runs shared stores without
 * guards, as releases before them did, so that tests can show what the guards prevent.
 */
export const kUnguarded = Symbol.for('fastify-server-cache.unguarded')

export const DEFAULT_MEMORY = { maxEntries: 10_000, maxBytes: 64 * 1024 * 1024 }

export function resolveOptions (input: unknown): ResolvedOptions {
  // Fastify hands plugins an empty object when register() got none.
  const options = (input ?? {}) as ServerCacheOptions
  validate(PluginOptionsSchema, options)

  const defaultExpiration = options.defaultExpiration ?? 3600
  const maxExpiration = options.maxExpiration ?? 86400
  if (defaultExpiration > maxExpiration) {
    throw new CacheConfigurationError(`defaultExpiration: ${defaultExpiration} is above maxExpiration (${maxExpiration})`)
  }

  const backends: ResolvedOptions['backends'] = new Map()
  const primary = { backend: options.backend ?? 'memory', redis: options.redis, memcached: options.memcached, memory: options.memory }
  for (const [name, spec] of [['', primary], ...Object.entries(options.backends ?? {})] as Array<[string, BackendSpec]>) {
    backends.set(name, {
      backend: spec.backend,
      redis: spec.redis && { ...spec.redis },
      memcached: spec.memcached && { ...spec.memcached },
      memory: { ...DEFAULT_MEMORY, ...spec.memory },
    })
  }

  return {
    enabled: options.enabled ?? true,
    defaultExpiration,
    maxExpiration,
    keyPrefix: options.keyPrefix ?? 'fastify-cache',
    maxEntryBytes: options.maxEntryBytes ?? 5 * 1024 * 1024,
    compression: { enabled: options.compression?.enabled ?? true, threshold: options.compression?.threshold ?? 1024 },
    statistics: options.statistics ?? true,
    fallback: options.fallback ?? 'memory',
    operationTimeout: options.operationTimeout ?? 250,
    lease: options.lease ? { ttl: options.lease.ttl ?? 5000, wait: options.lease.wait ?? 2000, poll: options.lease.poll ?? 20 } : false,
    cacheHeader: options.cacheHeader === undefined ? 'x-cache' : options.cacheHeader === false ? false : options.cacheHeader.toLowerCase(),
    backends,
    managementRoutes: resolveManagement(options.managementRoutes),
    cacheStatus: options.cacheStatus ?? false,
    metrics: options.metrics === undefined || options.metrics === false ? false : { registry: options.metrics.registry, prefix: options.metrics.prefix ?? 'fastify_cache_' },
    guarded: (options as { [kUnguarded]?: unknown })[kUnguarded] !== true,
  }
}

function resolveManagement (input: ServerCacheOptions['managementRoutes']): ResolvedOptions['managementRoutes'] {
  if (input === undefined || input === false) return false
  const hooks = input.onRequest === undefined ? [] : Array.isArray(input.onRequest) ? [...input.onRequest] : [input.onRequest]
  if (hooks.length === 0 && input.allowUnauthenticated !== true) {
    throw new CacheConfigurationError(
      'managementRoutes: an onRequest access check is required (these routes can wipe the cache); ' +
      'pass managementRoutes.onRequest, or allowUnauthenticated: true to expose them without one'
    )
  }
  return { prefix: (input.prefix ?? '/cache').replace(/\/+$/, ''), onRequest: hooks }
}
