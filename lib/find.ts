import type { FastifyRequest } from 'fastify'
import type { ResponseEntry } from './codec.js'
import { UNAVAILABLE, type Engine, type ManagedStore } from './engine.js'
import { tokenKey, type Miss } from './request-state.js'
import type { RouteCounter } from './stats.js'
import { sameVariant, variantDigest } from './variants.js'

export interface LookupRoute {
  engine: Engine
  store: ManagedStore
  key: (request: FastifyRequest) => string
  /** The route's tags, filled in from a request; undefined when it has none. */
  tags: ((request: FastifyRequest) => string[]) | undefined
  counter: RouteCounter
  /** Lower-case request header names from the route's `vary`. */
  vary: string[]
  /** Seconds a stored response lives (what a created guard must outlive). */
  expiration: number
  flights: import('./coalesce.js').Flights
  /** ms after an entry's fresh time during which it is served STALE (and refreshed), or answers errors. */
  stale: { whileRevalidate: number, ifError: number, timeout?: number }
  /** Routes with staleWhileRevalidate: runs their background refreshes. */
  refresher?: import('./refresh.js').Refresher
}

/** The stored response for this request, or the miss to fill. */
export async function find (route: LookupRoute, request: FastifyRequest, k: string, tags: readonly string[]): Promise<{ entry?: ResponseEntry, miss: Miss } | typeof UNAVAILABLE> {
  const { engine, store, vary } = route
  const seq = engine.invalidations
  // With `vary`, the tags guard the variant set's marker too: a tag invalidated orphans the set.
  let found = await engine.read(store, k, tags, route.expiration)
  if (found === UNAVAILABLE) return UNAVAILABLE
  const miss: Miss = { key: k, seq, tags, token: found.token }
  if (vary.length > 0) {
    miss.root = k
    miss.variant = variantDigest(request, vary)
    if (found.entry?.kind !== 'variants') {
      miss.key = `${k}|?|${miss.variant}`
      return { miss }
    }
    miss.variantSet = found.entry.token
    miss.key = `${k}|${miss.variantSet}|${miss.variant}`
    found = await engine.read(store, miss.key, tags, route.expiration)
    if (found === UNAVAILABLE) return UNAVAILABLE
    miss.token = found.token
  }
  const entry = found.entry
  if (entry?.kind === 'response' && sameVariant(entry, request)) return { entry, miss }
  return { miss }
}

/**
 * Makes the miss's token writable before its handler runs (see Store#prepare): false when the
 * store failed (logged; the request bypasses the cache). An overtaken token becomes undefined:
 * the handler runs and its response is not stored.
 */
export async function prepareMiss (route: LookupRoute, miss: Miss): Promise<boolean> {
  const token = await route.engine.prepare(route.store, tokenKey(miss), miss.token ?? null, route.expiration, miss.tags)
  if (token === UNAVAILABLE) return false
  miss.token = token
  return true
}

/** Whether the miss's token still has to be prepared (a round trip) before the handler runs. */
export function needsPrepare (engine: Engine, miss: Miss): boolean {
  return engine.guarded && miss.token !== null && miss.token !== undefined && miss.token.id === undefined
}
