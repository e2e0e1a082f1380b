import type { FastifyBaseLogger } from 'fastify'
import { Codec, CorruptEntryError, type Entry } from './codec.js'
import { InvalidRequestError, PatternMatchingNotSupportedError } from './errors.js'
import { compileGlob, escapeGlob } from './glob.js'
import { InFlight } from './in-flight.js'
import type { ResolvedOptions } from './options.js'
import { Stats } from './stats.js'
import { writeEpoch } from './stores/batch-writes.js'
import type { Store, Token } from './stores/store.js'

/** A store as the plugin holds it: the failover wrapper adds `fallbackActive` to remote ones. */
export type ManagedStore = Store & { readonly fallbackActive?: boolean, readonly breakerOpen?: boolean, readonly fallbackStore?: import('./stores/memory.js').MemoryStore }

/** How many invalidations changedSince() can look back over; older misses are not stored. */
const RECENT_INVALIDATIONS = 1024

const NO_TAGS: readonly string[] = []
const CORRUPT = Symbol('corrupt')

/** Returned by reads when the store failed: the caller bypasses the cache. */
export const UNAVAILABLE = Symbol('unavailable')

/**
 * What a lookup found: the decoded entry (undefined when missing, invalidated or corrupt) and
 * the token a fill of the key writes with (null: a local store, Engine#changedSince guards it).
 */
export interface Found {
  entry: Entry | undefined
  token: Token | null
}

interface ReadStart { seq: number, epoch: number }

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
  /**
   * Whether shared stores keep the cross-instance guarantee (guards, see stores/store.ts).
   * Off only through an internal switch, for the tests that prove the guarantee needs them.
   */
  readonly guarded: boolean
  /** Store reads and guard creations in flight, per store and key (see #shared). */
  readonly #reads = new WeakMap<ManagedStore, InFlight<{ value: Buffer | undefined, token: Token | null }, ReadStart>>()
  readonly #prepares = new WeakMap<ManagedStore, InFlight<Token | undefined, ReadStart>>()
  /** The latest invalidations, oldest first: what each one covered. */
  readonly #recent: Array<{ seq: number, covers: (key: string) => boolean, tags?: ReadonlySet<string> }> = []
  /** Invalidations since start, by kind: keys, patterns, tags, namespace clears (for metrics). */
  readonly invalidationsByKind = { key: 0, pattern: 0, tag: 0, namespace: 0 }
  #lastWarn = 0
  #suppressed = 0

  constructor (opts: ResolvedOptions, stores: ReadonlyMap<string, ManagedStore>, log: FastifyBaseLogger) {
    this.opts = opts
    this.stores = stores
    this.log = log
    this.backend = opts.backends.get('')?.backend ?? 'memory'
    this.codec = new Codec(opts.compression)
    this.stats = new Stats(opts.statistics, opts.metrics !== false)
    this.prefix = opts.keyPrefix + ':'
    this.escapedPrefix = escapeGlob(this.prefix)
    this.guarded = opts.guarded
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
  invalidated (covers: (key: string) => boolean, tags?: readonly string[]): void {
    this.invalidations++
    if (this.#recent.length === RECENT_INVALIDATIONS) this.#recent.shift()
    this.#recent.push({ seq: this.invalidations, covers, tags: tags === undefined ? undefined : new Set(tags) })
  }

  /** Whether an invalidation since `seq` covered `key` (true when the record no longer reaches back). */
  changedSince (key: string, seq: number, tags?: readonly string[]): boolean {
    if (this.invalidations === seq) return false
    const recent = this.#recent
    if (recent.length === 0 || recent[0].seq > seq + 1) return true
    for (let i = recent.length - 1; i >= 0 && recent[i].seq > seq; i--) {
      const { covers, tags: invalidatedTags } = recent[i]
      if (covers(key)) return true
      if (invalidatedTags !== undefined && tags !== undefined && tags.some((t) => invalidatedTags.has(t))) return true
    }
    return false
  }

  /**
   * The one way a store operation fails open: its failure is counted and logged (throttled,
   * see failed()) and `fallback` is what the caller gets instead. Never rejects for the store.
   */
  async attempt<T, F> (op: string, key: string, fallback: F, run: () => Promise<T>): Promise<T | F> {
    try {
      return await run()
    } catch (err) {
      this.failed(err, op, key)
      return fallback
    }
  }

  /** The decoded entry and the token to fill it with; UNAVAILABLE when the store failed (logged). */
  async read (store: ManagedStore, key: string, tags: readonly string[] = NO_TAGS, create?: number): Promise<Found | typeof UNAVAILABLE> {
    const guardTtl = this.guarded ? create : undefined
    const read = await this.attempt('get', key, UNAVAILABLE, () => this.#shared(this.#reads, store, key, tags, () => store.read(key, tags, guardTtl)))
    if (read === UNAVAILABLE) return UNAVAILABLE
    if (read.value === undefined) return { entry: undefined, token: read.token }
    const entry = this.#decode(key, read.value, !store.local)
    if (entry !== CORRUPT) return { entry, token: read.token }
    // Deleted (with its guard) before the key is read again: the token of the first read, whose
    // guard the delete removes, could not store the fill that replaces the corrupt entry.
    await this.attempt('delete', key, 0, () => store.delete([key]))
    const again = await this.attempt('get', key, UNAVAILABLE, () => store.read(key, tags, guardTtl))
    return again === UNAVAILABLE ? UNAVAILABLE : { entry: undefined, token: again.token }
  }

  /** read() for stores with getSync (memory): no promise, no microtask. */
  readNow (store: ManagedStore & { getSync: (key: string) => Buffer | undefined }, key: string): Entry | undefined {
    const buf = store.getSync(key)
    if (buf === undefined) return undefined
    const entry = this.#decode(key, buf, false)
    if (entry !== CORRUPT) return entry
    this.attempt('delete', key, 0, () => store.delete([key])).catch(() => {})
    return undefined
  }

  /**
   * Makes a lookup's token writable before the handler runs (see Store#prepare). Resolves the
   * token (null for local stores), undefined when an invalidation overtook it (run, don't
   * store), UNAVAILABLE when the store failed (logged).
   */
  async prepare (store: ManagedStore, key: string, token: Token | null, ttl: number, tags: readonly string[] = NO_TAGS): Promise<Token | null | undefined | typeof UNAVAILABLE> {
    if (token === null || token.id !== undefined || !this.guarded) return token
    return await this.attempt('prepare', key, UNAVAILABLE, () => this.#shared(this.#prepares, store, key, tags, () => store.prepare(key, token, ttl)))
  }

  /** The entry, or CORRUPT (logged; the caller deletes it). */
  #decode (key: string, buf: Buffer, remote: boolean): Entry | typeof CORRUPT {
    try {
      return this.codec.decode(buf, key, remote)
    } catch (err) {
      if (!(err instanceof CorruptEntryError)) throw err
      this.log.warn({ key, reason: err.message }, 'Cache entry could not be decoded; deleted and treated as a miss')
      return CORRUPT
    }
  }

  /**
   * Concurrent reads of one key share one store round trip (and, the Buffer being the same, one
   * decode): under load a hot key costs one GET per round trip, not one per request. A lookup
   * joins a read only while that read has not left the process (the write epoch has not moved):
   * its answer then comes after the lookup began, so after any invalidation whose response the
   * client could have seen, on any instance. A read that started before an invalidation or a
   * write of the key in this process is never joined either.
   */
  #shared<T> (inFlight: WeakMap<ManagedStore, InFlight<T, ReadStart>>, store: ManagedStore, key: string, tags: readonly string[], start: () => Promise<T>): Promise<T> {
    if (this.guarded && !store.batched) return start()
    let reads = inFlight.get(store)
    if (reads === undefined) {
      reads = new InFlight()
      inFlight.set(store, reads)
    }
    const guarded = this.guarded
    // Routes that share a key but not its tags read (and prepare) apart.
    const id = tags.length === 0 ? key : key + '\0' + tags.join('\0')
    return reads.get(id, { seq: this.invalidations, epoch: writeEpoch() },
      (since) => (!guarded || since.epoch === writeEpoch()) && !this.changedSince(key, since.seq, tags), start)
  }

  /**
   * Stores an entry: with the token of its lookup (a fill: valid only while nothing invalidated
   * the key since), or without one (a new current value). False when the store failed (logged).
   */
  async write (store: ManagedStore, key: string, value: Buffer, ttl: number, token?: Token | null, tags: readonly string[] = NO_TAGS): Promise<boolean> {
    // A read in flight may predate this write: later readers must not join it.
    this.#reads.get(store)?.forget(key)
    const written = await this.attempt('set', key, false, async () => {
      await store.set(key, value, ttl, this.guarded ? token : undefined, tags)
      return true
    })
    if (written && this.stats.enabled) this.stats.sets++
    return written
  }

  /** Resolves the number deleted; 0 when the store failed (logged; the store replays it). */
  async remove (store: ManagedStore, keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0
    this.invalidationsByKind.key += keys.length
    this.invalidated(keys.length === 1 ? (k) => k === keys[0] : (k) => keys.includes(k))
    const n = await this.attempt('delete', keys.join(' '), 0, () => store.delete(keys))
    if (this.stats.enabled) this.stats.deletes += n
    return n
  }

  /**
   * `pattern` is a full-key pattern (prefix already escaped). Resolves the number deleted (0 when
   * the store failed: logged, and replayed by the store); rejects with
   * PatternMatchingNotSupportedError where the store cannot match patterns.
   */
  async removePattern (store: ManagedStore, pattern: string): Promise<number> {
    if (!store.patterns) {
      throw new PatternMatchingNotSupportedError(`${store.kind} cannot match key patterns (it has no way to list keys): '${pattern}'`)
    }
    this.invalidationsByKind.pattern++
    this.invalidated(compileGlob(pattern))
    const n = await this.attempt('deletePattern', pattern, 0, () => store.deletePattern(pattern))
    if (this.stats.enabled) this.stats.deletes += n
    return n
  }

  /** Every entry carrying one of the tags is gone; a store failure is logged (and replayed). */
  async invalidateTags (store: ManagedStore, tags: readonly string[]): Promise<void> {
    if (tags.length === 0) return
    this.invalidationsByKind.tag += tags.length
    this.invalidated(() => false, tags)
    await this.attempt('invalidateTags', tags.join(' '), undefined, () => store.invalidateTags(tags))
  }

  /** Everything under `prefix` (a full key prefix ending in ':') is gone. */
  async clear (store: ManagedStore, prefix: string): Promise<void> {
    this.invalidationsByKind.namespace++
    this.invalidated((k) => k.startsWith(prefix))
    await this.attempt('clear', prefix, undefined, () => store.clear(prefix))
  }

  /** Whether the default store is serving from its start-up fallback. */
  get fallbackActive (): boolean {
    return this.stores.get('')?.fallbackActive === true
  }
}
