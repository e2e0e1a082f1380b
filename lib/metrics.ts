import type * as Prom from 'prom-client'
import type { Engine, ManagedStore } from './engine.js'
import { MemoryStore } from './stores/memory.js'

/** Seconds: a loopback hit takes ~0.1 ms, a timeout 250 ms by default. */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
const OUTCOMES = [['hit', 'hits'], ['miss', 'misses'], ['stale', 'stale'], ['bypass', 'bypasses']] as const

/**
 * Prometheus metrics over the plugin's own counters. Requests and invalidations are plain
 * counters on the hot path (Stats, Engine#invalidationsByKind), read when scraped; only store
 * operations on Redis and Memcached are observed as they happen, into label children bound once
 * per backend and operation. Labels are route templates, backend kinds, operation and kind
 * names: nothing filled in from a request, so their number is fixed by the configuration.
 */
export class CacheMetrics {
  readonly registry: Prom.Registry
  /** Whether the registry is the plugin's own (then served at {managementPrefix}/metrics). */
  readonly own: boolean
  readonly #latency: Prom.Histogram<'backend' | 'operation'>
  readonly #errors: Prom.Counter<'backend' | 'operation'>
  /** Metrics whose values are read from the plugin's counters when scraped. */
  readonly #scraped: Prom.Metric[] = []
  #engine: Engine | undefined
  #stores: ReadonlyMap<string, ManagedStore> = new Map()

  constructor (prom: typeof Prom, options: { registry?: Prom.Registry, prefix: string }) {
    this.own = options.registry === undefined
    this.registry = options.registry ?? new prom.Registry()
    const registers = [this.registry]
    const p = options.prefix
    // Read from the plugin's counters at scrape time: `this` is the metric being collected.
    const metrics = this
    this.#scraped.push(new prom.Counter({
      name: `${p}requests_total`,
      help: 'Requests to cached routes by route (keyPrefix template) and outcome',
      labelNames: ['route', 'outcome'],
      registers,
      collect () {
        this.reset()
        for (const [route, counter] of metrics.#engine?.stats.routeTotals() ?? []) {
          for (const [outcome, field] of OUTCOMES) this.inc({ route, outcome }, counter[field])
        }
      },
    }))
    this.#scraped.push(new prom.Counter({
      name: `${p}invalidations_total`,
      help: 'Invalidations by kind: keys deleted, patterns, tags, namespace clears',
      labelNames: ['kind'],
      registers,
      collect () {
        this.reset()
        const by = metrics.#engine?.invalidationsByKind
        if (by !== undefined) for (const [kind, n] of Object.entries(by)) this.inc({ kind }, n)
      },
    }))
    this.#latency = new prom.Histogram({
      name: `${p}store_operation_seconds`,
      help: 'Duration of operations on the Redis or Memcached server, failures included',
      labelNames: ['backend', 'operation'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.#errors = new prom.Counter({
      name: `${p}store_errors_total`,
      help: 'Failed or timed-out operations on the Redis or Memcached server',
      labelNames: ['backend', 'operation'],
      registers,
    })
    // A 0/1 gauge per remote backend, and a sum over every memory store, read when scraped.
    const perRemote = (name: string, help: string, on: (store: ManagedStore) => boolean | undefined): Prom.Gauge => new prom.Gauge({
      name: p + name,
      help,
      labelNames: ['backend'],
      registers,
      collect () {
        for (const [backend, store] of metrics.#remote()) this.set({ backend }, on(store) === true ? 1 : 0)
      },
    })
    const overMemory = (name: string, help: string, count: (store: MemoryStore) => number): Prom.Gauge => new prom.Gauge({
      name: p + name,
      help,
      registers,
      collect () { this.set(metrics.#memory().reduce((n, m) => n + count(m), 0)) },
    })
    this.#scraped.push(
      perRemote('breaker_open', '1 while the circuit breaker of a backend is open (or its server unreachable since start-up)', (store) => store.breakerOpen),
      perRemote('fallback_active', '1 while a backend serves from its start-up fallback memory store', (store) => store.fallbackActive),
      overMemory('memory_store_bytes', 'Bytes held by memory stores (start-up fallbacks included)', (m) => m.bytes),
      overMemory('memory_store_entries', 'Entries held by memory stores (start-up fallbacks included)', (m) => m.size)
    )
  }

  /** What the metrics read from once the engine exists. */
  attach (engine: Engine, stores: ReadonlyMap<string, ManagedStore>): void {
    this.#engine = engine
    this.#stores = stores
  }

  /** The observer a remote store reports its operations to. */
  observer (backend: string): (operation: string, seconds: number, failed: boolean) => void {
    // Label children bound once per operation name (a handful per backend), not per call.
    const byOperation = new Map<string, { latency: Prom.Histogram.Internal<'backend' | 'operation'>, errors: Prom.Counter.Internal }>()
    return (operation, seconds, failed) => {
      let bound = byOperation.get(operation)
      if (bound === undefined) {
        bound = { latency: this.#latency.labels(backend, operation), errors: this.#errors.labels(backend, operation) }
        byOperation.set(operation, bound)
      }
      bound.latency.observe(seconds)
      if (failed) bound.errors.inc()
    }
  }

  /** Remote stores labelled by their name (`default` for the plugin's own backend). */
  * #remote (): Iterable<[string, ManagedStore]> {
    for (const [name, store] of this.#stores) if (!store.local) yield [label(name, store), store]
  }

  #memory (): MemoryStore[] {
    const out: MemoryStore[] = []
    for (const store of this.#stores.values()) {
      if (store instanceof MemoryStore) out.push(store)
      else if (store.fallbackStore !== undefined) out.push(store.fallbackStore)
    }
    return out
  }
}

/** The `backend` label: the store's kind for the default backend, else its configured name. */
export function label (name: string, store: { kind: string }): string {
  return name === '' ? store.kind : name
}
