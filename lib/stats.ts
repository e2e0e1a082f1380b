/** What `fastify.cache.stats()` returns. */
export interface CacheStats {
  backend: string
  fallbackActive: boolean
  hits: number
  misses: number
  hitRate: number
  sets: number
  deletes: number
  errors: number
  bypasses: number
  /** Expired responses served within a route's stale window (`x-cache: STALE`). */
  stale: number
  routes: Record<string, { hits: number, misses: number, stale: number }>
}

export interface RouteCounter { hits: number, misses: number, stale: number }

/**
 * Plain counters: incremented on the hot path, so no maps, no allocation. Each route holds its
 * own counter object (shared by routes with the same keyPrefix template).
 */
export class Stats {
  readonly enabled: boolean
  hits = 0
  misses = 0
  sets = 0
  deletes = 0
  errors = 0
  bypasses = 0
  stale = 0
  readonly #routes = new Map<string, RouteCounter>()

  constructor (enabled: boolean) {
    this.enabled = enabled
  }

  route (label: string): RouteCounter {
    let counter = this.#routes.get(label)
    if (counter === undefined) {
      counter = { hits: 0, misses: 0, stale: 0 }
      this.#routes.set(label, counter)
    }
    return counter
  }

  snapshot (backend: string, fallbackActive: boolean): CacheStats {
    const routes: CacheStats['routes'] = {}
    for (const [label, c] of this.#routes) routes[label] = { hits: c.hits, misses: c.misses, stale: c.stale }
    const looked = this.hits + this.misses
    return {
      backend,
      fallbackActive,
      hits: this.hits,
      misses: this.misses,
      hitRate: looked === 0 ? 0 : this.hits / looked,
      sets: this.sets,
      deletes: this.deletes,
      errors: this.errors,
      bypasses: this.bypasses,
      stale: this.stale,
      routes,
    }
  }

  reset (): void {
    this.hits = this.misses = this.sets = this.deletes = this.errors = this.bypasses = this.stale = 0
    for (const c of this.#routes.values()) c.hits = c.misses = c.stale = 0
  }
}
