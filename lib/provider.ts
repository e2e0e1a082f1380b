import { InvalidRequestError } from './errors.js'
import { escapeGlob } from './glob.js'
import { Engine, UNAVAILABLE, type ManagedStore } from './engine.js'
import { InFlight } from './in-flight.js'
import type { CacheStats } from './stats.js'
import type { Token } from './stores/store.js'

/** Options every provider call takes. */
export interface CacheCallOptions {
  /** One more key segment (`ns:key`); a namespace can be cleared as a whole. */
  namespace?: string
  /** One of the plugin's `backends`; the default store when omitted. */
  backendName?: string
}

export interface SetOptions extends CacheCallOptions {
  /** Seconds; `defaultExpiration` when omitted; at most `maxExpiration`. */
  expiration?: number
  /** Tags the value carries: `invalidateTags` of any of them removes it. */
  tags?: readonly string[]
}

export interface GetOrSetOptions extends SetOptions {
  /** Run the producer and store its result even when a value is cached. */
  forceRefresh?: boolean
}

/**
 * `fastify.cache`: the cache for code outside routes (services, jobs). Values are anything JSON
 * can hold. A store failure never rejects: reads resolve as misses and writes are skipped, with
 * a warning logged. Invalid arguments reject with a CacheError subclass.
 */
export interface CacheProvider {
  /** The value, or `undefined` when missing (a stored `null` resolves `null`). */
  get<T = unknown> (key: string, options?: CacheCallOptions): Promise<T | undefined>
  set (key: string, value: unknown, options?: SetOptions): Promise<void>
  exists (key: string, options?: CacheCallOptions): Promise<boolean>
  /** Number of keys deleted. */
  delete (keyOrKeys: string | readonly string[], options?: CacheCallOptions): Promise<number>
  /** Number of keys deleted; rejects with PatternMatchingNotSupportedError on Memcached. */
  deletePattern (pattern: string, options?: CacheCallOptions): Promise<number>
  /** Only this plugin's keys (never FLUSHDB / flush_all); with `namespace`, only that namespace. */
  clear (options?: CacheCallOptions): Promise<void>
  /** Seconds left; -2 missing; -1 no expiry. */
  ttl (key: string, options?: CacheCallOptions): Promise<number>
  /** false when the key is missing. */
  expire (key: string, seconds: number, options?: CacheCallOptions): Promise<boolean>
  /** The cached value, or the producer's result stored; concurrent callers share one producer call. */
  getOrSet<T> (key: string, producer: () => T | Promise<T>, options?: GetOrSetOptions): Promise<T>
  /** Every entry (route response or provider value) carrying one of the tags is gone, on every store. */
  invalidateTags (tagOrTags: string | readonly string[], options?: Pick<CacheCallOptions, 'backendName'>): Promise<void>
  /** Whether the configured store's server answers (false while the start-up fallback serves). */
  ping (): Promise<boolean>
  stats (): CacheStats
  resetStats (): void
}

/** Tags one entry may carry (its stamp counts them in one byte). */
const MAX_TAGS = 64

export function createProvider (engine: Engine): CacheProvider {
  const { opts, codec, stats } = engine
  /**
   * getOrSet producers running. A call joins one only when it read the same token as the call
   * that started it (no invalidation of the key in between, on any instance; see coalesce.ts).
   */
  const producing = new InFlight<unknown, { seq: number, token: Token | null | undefined }>()

  function target (key: unknown, options: CacheCallOptions | undefined): { store: ManagedStore, key: string } {
    if (typeof key !== 'string' || key.length === 0) throw new InvalidRequestError(`key: expected a non-empty string, got ${typeof key === 'string' ? "''" : typeof key}`)
    // NUL marks the plugin's own guard keys (see stores/redis.ts); no key of a user may hold one.
    if (key.includes('\0')) throw new InvalidRequestError('key: must not contain a NUL character')
    return { store: engine.store(options?.backendName), key: scope(options) + key }
  }

  function scope (options: CacheCallOptions | undefined): string {
    const ns = options?.namespace
    if (ns === undefined) return engine.prefix
    if (typeof ns !== 'string' || ns.length === 0 || ns.includes(':') || ns.includes('\0')) {
      throw new InvalidRequestError(`namespace: expected a non-empty string without ':' or NUL, got ${typeof ns === 'string' ? `'${ns}'` : typeof ns}`)
    }
    return engine.prefix + ns + ':'
  }

  function seconds (value: number | undefined, name: string): number {
    if (value === undefined) return opts.defaultExpiration
    if (!Number.isInteger(value) || value < 1) throw new InvalidRequestError(`${name}: expected an integer >= 1, got ${String(value)}`)
    if (value > opts.maxExpiration) throw new InvalidRequestError(`${name}: ${value} is above maxExpiration (${opts.maxExpiration})`)
    return value
  }

  /** Tags as a caller gave them: non-empty strings without NUL, at most MAX_TAGS. */
  function tagList (value: unknown, name: string): readonly string[] {
    if (value === undefined) return []
    const list = typeof value === 'string' && name === 'tagOrTags' ? [value] : value
    if (!Array.isArray(list) || list.length > MAX_TAGS) throw new InvalidRequestError(`${name}: expected an array of at most ${MAX_TAGS} tags`)
    list.forEach((tag, i) => {
      if (typeof tag !== 'string' || tag.length === 0 || tag.includes('\0')) {
        throw new InvalidRequestError(`${name}[${i}]: expected a non-empty string without NUL, got ${typeof tag === 'string' ? JSON.stringify(tag) : typeof tag}`)
      }
    })
    return [...new Set(list as string[])]
  }

  /** The value and the token a fill of the key writes with (undefined: the store failed). */
  async function lookup (store: ManagedStore, key: string, tags?: readonly string[]): Promise<{ value: unknown, token: Token | null | undefined }> {
    const found = await engine.read(store, key, tags)
    if (found === UNAVAILABLE) return { value: undefined, token: undefined }
    return { value: found.entry?.kind === 'value' ? found.entry.value : undefined, token: found.token }
  }

  function counted (value: unknown): unknown {
    if (stats.enabled) value === undefined ? stats.misses++ : stats.hits++
    return value
  }

  async function write (store: ManagedStore, key: string, value: unknown, ttl: number, token: Token | null | undefined, tags: readonly string[]): Promise<void> {
    let buf: Buffer | undefined
    try {
      buf = codec.encodeValue(value, !store.local, opts.maxEntryBytes)
    } catch (err) {
      throw new InvalidRequestError((err as Error).message, { cause: err })
    }
    if (buf === undefined) {
      engine.log.debug({ key, maxEntryBytes: opts.maxEntryBytes }, 'Value not cached: it is larger than maxEntryBytes')
      // A set() of a new value leaves no older one behind; a fill (with a token) simply stores nothing.
      if (token === undefined) await engine.remove(store, [key])
      return
    }
    await engine.write(store, key, buf, ttl, token, tags)
  }

  if (!opts.enabled) return disabledProvider(engine)

  return {
    async get<T> (key: string, options?: CacheCallOptions) {
      const t = target(key, options)
      return counted((await lookup(t.store, t.key)).value) as T | undefined
    },
    async set (key, value, options) {
      const t = target(key, options)
      // No token: a new current value, which fills in flight on any instance will not replace.
      await write(t.store, t.key, value, seconds(options?.expiration, 'expiration'), undefined, tagList(options?.tags, 'tags'))
    },
    async exists (key, options) {
      const t = target(key, options)
      return engine.attempt('exists', t.key, false, () => t.store.exists(t.key))
    },
    async delete (keyOrKeys, options) {
      const keys = typeof keyOrKeys === 'string' ? [keyOrKeys] : [...keyOrKeys]
      if (keys.length === 0) return 0
      const targets = keys.map((k) => target(k, options))
      return engine.remove(targets[0].store, targets.map((t) => t.key))
    },
    async deletePattern (pattern, options) {
      if (typeof pattern !== 'string' || pattern.length === 0) throw new InvalidRequestError('pattern: expected a non-empty string')
      const store = engine.store(options?.backendName)
      const full = escapeGlob(scope(options)) + pattern
      return await engine.removePattern(store, full)
    },
    async clear (options) {
      await engine.clear(engine.store(options?.backendName), scope(options))
    },
    async invalidateTags (tagOrTags, options) {
      const tags = tagList(tagOrTags, 'tagOrTags')
      await engine.invalidateTags(engine.store(options?.backendName), tags)
    },
    async ttl (key, options) {
      const t = target(key, options)
      return engine.attempt('ttl', t.key, -2, () => t.store.ttl(t.key))
    },
    async expire (key, secs, options) {
      const t = target(key, options)
      const s = seconds(secs, 'seconds')
      return engine.attempt('expire', t.key, false, () => t.store.expire(t.key, s))
    },
    async getOrSet<T> (key: string, producer: () => T | Promise<T>, options?: GetOrSetOptions): Promise<T> {
      if (typeof producer !== 'function') throw new InvalidRequestError('producer: expected a function')
      const t = target(key, options)
      const ttl = seconds(options?.expiration, 'expiration')
      const force = options?.forceRefresh === true
      const tags = tagList(options?.tags, 'tags')
      const id = `${force ? 'f' : 'g'}${options?.backendName ?? ''}\0${t.key}\0${tags.join('\0')}`
      const found = await lookup(t.store, t.key, tags)
      if (!force && counted(found.value) !== undefined) return found.value as T
      // A failed read stores nothing: the producer's value may predate a write it cannot see.
      let token = found.token
      if (token !== undefined && token !== null && token.id === undefined && engine.guarded) {
        const prepared = await engine.prepare(t.store, t.key, token, ttl, tags)
        token = prepared === UNAVAILABLE ? undefined : prepared
      }
      const seq = engine.invalidations
      const work = async (): Promise<T> => {
        const value = await producer()
        // Not stored when an invalidation of this key ran meanwhile: the value may predate it.
        if (value !== undefined && token !== undefined && !engine.changedSince(t.key, seq, tags)) await write(t.store, t.key, value, ttl, token, tags)
        return value
      }
      const joinable = (since: { seq: number, token: Token | null | undefined }): boolean =>
        !engine.changedSince(t.key, since.seq, tags) &&
        (!engine.guarded || since.token === null || (since.token?.id !== undefined && since.token.id === token?.id))
      return await (producing.get(id, { seq, token }, joinable, work) as Promise<T>)
    },
    async ping () {
      const store = engine.store(undefined)
      if (store.fallbackActive === true) return false
      return store.ping().catch(() => false)
    },
    stats () {
      return stats.snapshot(engine.backend, engine.fallbackActive)
    },
    resetStats () {
      stats.reset()
    },
  }
}

/** `enabled: false`: every call is a no-op, but arguments are still checked. */
function disabledProvider (engine: Engine): CacheProvider {
  return {
    get: async () => undefined,
    set: async () => {},
    exists: async () => false,
    delete: async () => 0,
    deletePattern: async () => 0,
    clear: async () => {},
    invalidateTags: async () => {},
    ttl: async () => -2,
    expire: async () => false,
    getOrSet: async (_key, producer) => await producer(),
    ping: async () => false,
    stats: () => engine.stats.snapshot(engine.backend, false),
    resetStats: () => {},
  }
}
