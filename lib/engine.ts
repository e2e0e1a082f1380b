import type { FastifyBaseLogger } from 'fastify'
import { Codec, CorruptEntryError, type Entry } from './codec.js'
import { InvalidRequestError } from './errors.js'
import { compileGlob, escapeGlob } from './glob.js'
import { InFlight } from './in-flight.js'
import type { Flight } from './lookup.js'
import type { ResolvedOptions } from './options.js'
import { Stats } from './stats.js'
import type { Store } from './stores/store.js'

/** A store as the plugin holds it: the failover wrapper adds `fallbackActive` to remote ones. */
export type ManagedStore = Store & { readonly fallbackActive?: boolean }

/** How many invalidations changedSince() can look back over; older misses are not stored. */
const RECENT_INVALIDATIONS = 1024

/** Returned by reads when the store failed: the caller bypasses the cache. */
export const UNAVAILABLE = Symbol('unavailable')

/**
 * What routes and the provider share: stores, entry codec, statistics, and the one place where
 * store failures are turned into fail-open results and logged.
 */
export class Engine {
  readonly opts: ResolvedOptions
  readonly codec: Codec
  readonly stats: Stats
  readonly stores: ReadonlyMap<string, ManagedStore>
  readonly log: FastifyBaseLogger
  /** The default store's kind, as stats and logs name it. */
  readonly backend: string
  /** `keyPrefix:` — every stored key starts with it. */
  readonly prefix: string
  readonly escapedPrefix: string
  /**
   * Bumped by every invalidation. A miss remembers it when it starts; before storing, it asks
   * changedSince() whether an invalidation since then covered its key: its response may then
   * predate the write, and storing it would bring stale data back until expiry.
   */
  invalidations = 0
  /** In-process fills in progress, by key: concurrent misses of a key wait for one handler. */
  readonly flights = new Map<string, Flight>()
  /** Store reads in flight, per store and key, for #sharedGet. */
  readonly #reads = new WeakMap<ManagedStore, InFlight<Buffer | undefined>>()
  /** The latest invalidations, oldest first: what each one covered. */
  readonly #recent: Array<{ seq: number, covers: (key: string) => boolean }> = []
  #lastWarn = 0
  #suppressed = 0

  constructor (opts: ResolvedOptions, stores: ReadonlyMap<string, ManagedStore>, log: FastifyBaseLogger) {
    this.opts = opts
    this.stores = stores
    this.log = log
    this.backend = opts.backends.get('')?.backend ?? 'memory'
    this.codec = new Codec(opts.compression)
    this.stats = new Stats(opts.statistics)
    this.prefix = opts.keyPrefix + ':'
    this.escapedPrefix = escapeGlob(this.prefix)
  }

  /** The store for a `backendName` (undefined: the default one). */
  store (backendName: string | undefined): ManagedStore {
    const store = this.stores.get(backendName ?? '')
    if (store === undefined) {
      throw new InvalidRequestError(`backendName: '${backendName}' is not one of the configured backends (${[...this.stores.keys()].filter(Boolean).map((n) => `'${n}'`).join(', ') || 'none'})`)
    }
    return store
  }

  /**
   * Log a store failure as a warning with its context. Under an outage at thousands of
   * requests per second one line per second is enough: the rest are counted into the next line.
   */
  failed (err: unknown, op: string, key?: string): void {
    if (this.stats.enabled) this.stats.errors++
    const now = Date.now()
    if (now - this.#lastWarn < 1000) {
      this.#suppressed++
      return
    }
    const suppressed = this.#suppressed
    this.#lastWarn = now
    this.#suppressed = 0
    const message = err instanceof Error ? err.message : String(err)
    this.log.warn({ op, key, backend: this.backend, err, suppressed }, `Cache backend not available: ${message}`)
  }

  /** Record an invalidation (before it is sent to the store). */
  invalidated (covers: (key: string) => boolean): void {
    this.invalidations++
    if (this.#recent.length === RECENT_INVALIDATIONS) this.#recent.shift()
    this.#recent.push({ seq: this.invalidations, covers })
  }

  /** Whether an invalidation since `seq` covered `key` (true when the record no longer reaches back). */
  changedSince (key: string, seq: number): boolean {
    if (this.invalidations === seq) return false
    const recent = this.#recent
    if (recent.length === 0 || recent[0].seq > seq + 1) return true
    for (let i = recent.length - 1; i >= 0 && recent[i].seq > seq; i--) {
      if (recent[i].covers(key)) return true
    }
    return false
  }

  /** The decoded entry, undefined when missing or corrupt (deleted), UNAVAILABLE on failure. */
  async read (store: ManagedStore, key: string): Promise<Entry | undefined | typeof UNAVAILABLE> {
    let buf: Buffer | undefined
    try {
      buf = await (store.getSync === undefined ? this.#sharedGet(store, key) : store.getSync(key))
    } catch (err) {
      this.failed(err, 'get', key)
      return UNAVAILABLE
    }
    return buf === undefined ? undefined : this.#decode(store, key, buf)
  }

  /** read() for stores with getSync (memory): no promise, no microtask. */
  readNow (store: ManagedStore & { getSync: (key: string) => Buffer | undefined }, key: string): Entry | undefined {
    const buf = store.getSync(key)
    return buf === undefined ? undefined : this.#decode(store, key, buf)
  }

  #decode (store: ManagedStore, key: string, buf: Buffer): Entry | undefined {
    try {
      return this.codec.decode(buf)
    } catch (err) {
      if (!(err instanceof CorruptEntryError)) throw err
      this.log.warn({ key, reason: err.message }, 'Cache entry could not be decoded; deleted and treated as a miss')
      store.delete([key]).catch((err) => this.failed(err, 'delete', key))
      return undefined
    }
  }

  /**
   * Concurrent reads of one key share one store round trip (and, the Buffer being the same, one
   * decode): under load a hot key costs one GET per round trip, not one per request. A read that
   * starts after an invalidation or a write of the key never joins one that started before it.
   */
  #sharedGet (store: ManagedStore, key: string): Promise<Buffer | undefined> {
    let reads = this.#reads.get(store)
    if (reads === undefined) {
      reads = new InFlight()
      this.#reads.set(store, reads)
    }
    return reads.get(key, this.invalidations, (seq) => !this.changedSince(key, seq), () => store.get(key))
  }

  async write (store: ManagedStore, key: string, value: Buffer, ttl: number): Promise<boolean> {
    // A read in flight may predate this write: later readers must not join it.
    this.#reads.get(store)?.forget(key)
    try {
      await store.set(key, value, ttl)
      if (this.stats.enabled) this.stats.sets++
      return true
    } catch (err) {
      this.failed(err, 'set', key)
      return false
    }
  }

  /** Resolves the number deleted; 0 when the store failed (logged; the store replays it). */
  async remove (store: ManagedStore, keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0
    this.invalidated(keys.length === 1 ? (k) => k === keys[0] : (k) => keys.includes(k))
    try {
      const n = await store.delete(keys)
      if (this.stats.enabled) this.stats.deletes += n
      return n
    } catch (err) {
      this.failed(err, 'delete', keys.join(' '))
      return 0
    }
  }

  /** `pattern` is a full-key pattern (prefix already escaped). Rejects with the store's error. */
  async removePattern (store: ManagedStore, pattern: string): Promise<number> {
    this.invalidated(compileGlob(pattern))
    const n = await store.deletePattern(pattern)
    if (this.stats.enabled) this.stats.deletes += n
    return n
  }

  /** Whether the default store is serving from its start-up fallback. */
  get fallbackActive (): boolean {
    return this.stores.get('')?.fallbackActive === true
  }
}
