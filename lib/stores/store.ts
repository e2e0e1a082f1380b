/**
 * The contract every backend implements. Stores are deliberately dumb byte stores:
 * key prefixing, namespaces, entry encoding, compression, statistics and fail-open live above
 * them (lib/provider.ts), so that a new backend only has to move bytes.
 *
 * Keys passed in are full keys: `keyPrefix:...` already applied. Patterns are Redis glob
 * patterns over full keys (the caller escapes the prefix). Every method may reject with any
 * error; the caller treats a rejection as "store unavailable" and fails open.
 *
 * Shared stores (Redis, Memcached) keep the cross-instance guarantee with guards: every key has
 * a guard, a small random value in the same store that every invalidation of the key deletes
 * (a namespace clear, on Memcached, replaces the namespace's version instead). A read returns
 * the guard it saw as its token; a fill writes its entry tagged with that token; a read serves an
 * entry only while its tag is the key's current guard. A fill that started before an
 * invalidation on any instance therefore writes an entry that is never served. See README
 * "Consistency across instances" for the argument.
 */

/**
 * What a read saw of a key's guard (and, on Memcached, its namespace versions). Opaque above
 * the store, except `id`: equal ids mean that nothing invalidated the key between the two reads.
 * `id` is undefined while the key has no guard yet (see Store#prepare).
 */
export interface Token { readonly id: string | undefined }

/** A read: the valid entry's bytes (or undefined) and what it saw; `token` null for local stores. */
export interface Read {
  value: Buffer | undefined
  token: Token | null
}

export interface Store {
  /** 'memory' | 'redis' | 'memcached' — reported by stats() and /cache/ping. */
  readonly kind: StoreKind
  /** In this process only: no other instance reads or invalidates it, so it keeps no guards. */
  readonly local: boolean
  /** Whether deletePattern works (Memcached cannot list keys). */
  readonly patterns: boolean
  /**
   * Whether a command issued now leaves the process only once the write epoch moves (see
   * batch-writes.ts), so that a read can be shared with lookups that start before that.
   */
  readonly batched: boolean

  /** Resolves once the store is usable; rejects when its server cannot be reached. */
  connect (): Promise<void>

  /** The stored bytes, or undefined when the key is missing, expired or invalidated. */
  get (key: string): Promise<Buffer | undefined>

  /**
   * `get`, with the token a conditional `set` of the key needs (one round trip). `tags`: the
   * tags a fill of this key will carry; their guards are read with the entry (an entry that
   * carries other tags costs a second round trip to check theirs). `create` (seconds): a route's
   * lookup, whose miss would prepare next: a store that can creates the missing guards in the
   * same round trip (as `prepare` would), so that a miss needs no second one.
   */
  read (key: string, tags?: readonly string[], create?: number): Promise<Read>

  /**
   * Makes a read's token writable before the work whose result will be stored starts: creates
   * the key's guard (and missing namespace versions) when the read found none. Resolves the
   * token to write with, or undefined when an invalidation has already overtaken it (then the
   * result must not be stored). At most one round trip; none when the token has its guard.
   */
  prepare (key: string, token: Token, ttlSeconds: number): Promise<Token | undefined>

  /**
   * Optional: `get` without a promise, for in-process stores. The hit path uses it when present
   * (a memory hit then costs no microtask at all).
   */
  getSync? (key: string): Buffer | undefined

  /**
   * Store bytes; `ttlSeconds` > 0 always (expiry set atomically with the value). With a
   * prepared token the entry is valid only while nothing has invalidated the key since that
   * token's read (a fill); without one it is written as the key's new current value, and fills
   * in flight on any instance will not replace it with older data.
   */
  set (key: string, value: Buffer, ttlSeconds: number, token?: Token | null, tags?: readonly string[]): Promise<void>

  /**
   * Every entry carrying one of the tags is gone (unreachable at once, whatever their number:
   * the tag's guard is deleted, nothing is scanned). Fills in flight that read the old guard
   * write entries that are never served.
   */
  invalidateTags (tags: readonly string[]): Promise<void>

  /**
   * Store only when the key does not exist; resolves whether it was stored. A marker (leases),
   * not an entry: it has no guard and only `add`, `delete` and its expiry apply to it.
   */
  add (key: string, value: Buffer, ttlSeconds: number): Promise<boolean>

  /** Number of the given keys that existed and were deleted; their guards go with them. */
  delete (keys: readonly string[]): Promise<number>

  /** Whether the key exists (and has not expired). */
  exists (key: string): Promise<boolean>

  /** Seconds left: -2 missing, -1 no expiry. */
  ttl (key: string): Promise<number>

  /** Set a new expiry (seconds > 0); false when the key is missing. */
  expire (key: string, seconds: number): Promise<boolean>

  /**
   * Delete every key matching the glob `pattern` (Redis semantics: `*`, `?`, `[abc]`, `[^a]`,
   * `[a-c]`, `\x` escapes). Resolves the number deleted. Memcached rejects with
   * PatternMatchingNotSupportedError.
   */
  deletePattern (pattern: string): Promise<number>

  /**
   * Remove every key that starts with `prefix` (a full key prefix ending in ':', e.g.
   * `fastify-cache:` or `fastify-cache:users:`). Never touches other keys. Supported by every
   * backend, Memcached included.
   */
  clear (prefix: string): Promise<void>

  /** Whether the server answers right now. */
  ping (): Promise<boolean>

  /** Release what the store owns (never a client the user passed in). */
  close (): Promise<void>
}

export type StoreKind = 'memory' | 'redis' | 'memcached'

/** What a store factory gets from the plugin. */
export interface StoreContext {
  /** The global keyPrefix, without the trailing ':'. */
  keyPrefix: string
  /** ms; an operation slower than this is a failure. */
  operationTimeout: number
  /** Seconds; the longest an entry may live (tag guards outlive it). */
  maxExpiration?: number
  log: import('fastify').FastifyBaseLogger
}
