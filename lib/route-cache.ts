import type { RouteOptions } from 'fastify'
import type { Engine } from './engine.js'
import { CacheConfigurationError, InvalidRequestError } from './errors.js'
import { capturePayload, makeFill } from './fill.js'
import { compileExtras, compileNamespaces, compilePatterns, compileTags, isMutation, makeInvalidate } from './invalidate.js'
import { compileKey, compileResourceId, type IdType } from './keys.js'
import { Flights } from './coalesce.js'
import { makeLookup } from './lookup.js'
import { Refresher } from './refresh.js'
import { RouteCacheConfigSchema, type RouteCacheConfig } from './schemas.js'
import { validate } from './validate.js'

/**
 * The `onRoute` hook: validates a route's `config.cache` and compiles everything a request needs
 * (key builder, store, hooks) once, at registration. Routes without `config.cache` are left
 * untouched and pay nothing. Mutation routes whose patterns their store cannot match
 * (Memcached) are listed into `unmatchable`, for one warning at start-up.
 */
export function cacheRoutes (engine: Engine, unmatchable: string[]): (route: RouteOptions) => void {
  // One per plugin instance: routes sharing keys share their fills.
  const flights = new Flights()
  return function onRoute (route) {
    const raw = (route.config as { cache?: unknown } | undefined)?.cache
    if (raw === undefined) return
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).map((m) => m.toUpperCase())
    const where = `config.cache of ${methods.join(',')} ${route.url}`
    validate(RouteCacheConfigSchema, raw, where)
    const cfg = raw as RouteCacheConfig
    const reads = methods.includes('GET') || methods.includes('HEAD')
    if (reads && (cfg.toInvalidateExtra !== undefined || cfg.patternToInvalidateExtra !== undefined || cfg.invalidateTags !== undefined || cfg.invalidateNamespaces !== undefined)) {
      throw new InvalidRequestError(`${where}: toInvalidateExtra, patternToInvalidateExtra, invalidateTags and invalidateNamespaces are for mutations (POST, PUT, PATCH, DELETE), not GET routes`)
    }
    if (methods.some(isMutation) && cfg.tags !== undefined) {
      throw new InvalidRequestError(`${where}: tags are for GET routes (what their responses carry); a mutation invalidates them with invalidateTags`)
    }
    if (methods.some(isMutation) && (cfg.staleWhileRevalidate !== undefined || cfg.staleIfError !== undefined || cfg.staleTimeout !== undefined)) {
      throw new InvalidRequestError(`${where}: staleWhileRevalidate, staleIfError and staleTimeout are for GET routes`)
    }
    if (cfg.staleTimeout !== undefined && !(cfg.staleIfError !== undefined && cfg.staleIfError > 0)) {
      throw new CacheConfigurationError(`${where}: staleTimeout: needs staleIfError (the window in which a slow handler is answered from the expired entry)`)
    }
    const stale = { whileRevalidate: (cfg.staleWhileRevalidate ?? 0) * 1000, ifError: (cfg.staleIfError ?? 0) * 1000, timeout: cfg.staleTimeout }
    const expiration = cfg.expiration ?? engine.opts.defaultExpiration
    if (expiration > engine.opts.maxExpiration) {
      throw new CacheConfigurationError(`${where}: expiration: ${expiration} is above maxExpiration (${engine.opts.maxExpiration})`)
    }
    // An entry is kept for its expiration plus the larger stale window.
    const keepFor = expiration + Math.max(cfg.staleWhileRevalidate ?? 0, cfg.staleIfError ?? 0)
    if (!engine.opts.backends.has(cfg.backendName ?? '')) {
      throw new CacheConfigurationError(`${where}: backendName: '${cfg.backendName}' is not one of the configured backends`)
    }
    const types: IdType[] = cfg.resourceIdType === undefined ? ['integer'] : Array.isArray(cfg.resourceIdType) ? cfg.resourceIdType : [cfg.resourceIdType]
    const key = compileKey(cfg.keyPrefix, compileResourceId(cfg.resourceIdName, types, route.url), `${where}: keyPrefix`)
    const extras = compileExtras(cfg, where)
    const patterns = compilePatterns(cfg, where)
    const tags = compileTags(cfg.tags, `${where}: tags`)
    const invalidateTags = compileTags(cfg.invalidateTags, `${where}: invalidateTags`)
    const namespaces = compileNamespaces(cfg.invalidateNamespaces, `${where}: invalidateNamespaces`)
    // Disabled: a route's mistakes still fail at boot, not on the day caching is switched on.
    if (!engine.opts.enabled) return
    const store = engine.store(cfg.backendName)

    if (reads) {
      const counter = engine.stats.route(typeof cfg.keyPrefix === 'string' ? cfg.keyPrefix : route.url)
      const vary = cfg.vary?.map((h) => h.toLowerCase()) ?? []
      route.preHandler = appendHook(route.preHandler, makeLookup({ engine, store, key, tags, counter, vary, expiration: keepFor, flights, stale, refresher: stale.whileRevalidate > 0 || stale.timeout !== undefined ? new Refresher(engine, store) : undefined }))
      if (methods.includes('GET')) {
        // Route-level onSend hooks already here (a plugin registered before this one, such as
        // @fastify/compress, or the route's own) run before the fill: a capture ahead of them
        // keeps the payload as the handler made it, before an encoder turns it into a stream or
        // one client's encoding, and the fill still sees every header they set. Hooks added
        // later come after the fill, which then sees the handler's payload itself: no capture,
        // no extra hook per request. A hit's payload passes the same hooks as the miss's did.
        if (hasHooks(route.onSend)) route.onSend = prependHook(route.onSend, capturePayload)
        route.onSend = appendHook(route.onSend, makeFill(engine, store, new Set(cfg.statusCodes ?? [200]), { expiration, whileRevalidate: cfg.staleWhileRevalidate ?? 0, ifError: cfg.staleIfError ?? 0 }, counter))
      }
    }
    if (methods.some(isMutation)) {
      if (patterns.length > 0 && !store.patterns) unmatchable.push(`${methods.join(',')} ${route.url}`)
      route.onSend = appendHook(route.onSend, makeInvalidate(engine, store, { own: key, extras, patterns, tags: invalidateTags, namespaces }))
    }
  }
}

function hasHooks<T> (hooks: T | T[] | undefined): boolean {
  return Array.isArray(hooks) ? hooks.length > 0 : hooks !== undefined
}

function prependHook<T> (hooks: T | T[] | undefined, hook: T): T[] {
  return hooks === undefined ? [hook] : Array.isArray(hooks) ? [hook, ...hooks] : [hook, hooks]
}

function appendHook<T> (hooks: T | T[] | undefined, hook: T): T[] {
  return hooks === undefined ? [hook] : Array.isArray(hooks) ? [...hooks, hook] : [hooks, hook]
}
