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

export interface RouteCounter { hits: number, misses: number, stale: number, bypasses: number }

const zero = (): RouteCounter => ({ hits: 0, misses: 0, stale: 0, bypasses: 0 })

/**
 * Plain counters: incremented on the hot path, so no maps, no allocation. Each route holds its
 * own counter object (shared by routes with the same keyPrefix template). Route counters only
 * grow (Prometheus counters read them); `stats()` reports them since the last reset.
 */
export class Stats {
  /** Whether anything counts: `statistics`, or metrics, are on. */
  readonly enabled: boolean
  /** Whether `stats()` reports the counts (`statistics: false` reports zeros). */
  readonly reported: boolean
  hits = 0
  misses = 0
  sets = 0
  deletes = 0
  errors = 0
  bypasses = 0
  stale = 0
  readonly #routes = new Map<string, RouteCounter>()
  /** Route counts at the last reset. */
  readonly #base = new Map<string, RouteCounter>()

  constructor (reported: boolean, metrics = false) {
    this.reported = reported
    this.enabled = reported || metrics
  }

  route (label: string): RouteCounter {
    let counter = this.#routes.get(label)
    if (counter === undefined) {
      counter = zero()
      this.#routes.set(label, counter)
    }
    return counter
  }

  /** Every route's counts since start (for metrics). */
  routeTotals (): ReadonlyMap<string, Readonly<RouteCounter>> {
    return this.#routes
  }

  snapshot (backend: string, fallbackActive: boolean): CacheStats {
    const routes: CacheStats['routes'] = {}
    if (!this.reported) {
      for (const label of this.#routes.keys()) routes[label] = { hits: 0, misses: 0, stale: 0 }
      return { backend, fallbackActive, hits: 0, misses: 0, hitRate: 0, sets: 0, deletes: 0, errors: 0, bypasses: 0, stale: 0, routes }
    }
    for (const [label, c] of this.#routes) {
      const base = this.#base.get(label)
      routes[label] = base === undefined ? { hits: c.hits, misses: c.misses, stale: c.stale } : { hits: c.hits - base.hits, misses: c.misses - base.misses, stale: c.stale - base.stale }
    }
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
    for (const [label, c] of this.#routes) this.#base.set(label, { ...c })
  }
}
