/**
 * The contract every backend implements. Stores are deliberately dumb byte stores:
 * key prefixing, namespaces, entry encoding, compression, statistics and fail-open live above
 * them (lib/provider.ts), so that a new backend only has to move bytes.
 *
 * Keys passed in are full keys: `keyPrefix:...` already applied. Patterns are Redis glob
 * patterns over full keys (the caller escapes the prefix). Every method may reject with any
 * error; the caller treats a rejection as "store unavailable" and fails open.
 */
export interface Store {
  /** 'memory' | 'redis' | 'memcached' — reported by stats() and /cache/ping. */
  readonly kind: StoreKind

  /** Resolves once the store is usable; rejects when its server cannot be reached. */
  connect (): Promise<void>

  /** The stored bytes, or undefined when the key is missing or expired. */
  get (key: string): Promise<Buffer | undefined>

  /**
   * Optional: `get` without a promise, for in-process stores. The hit path uses it when present
   * (a memory hit then costs no microtask at all).
   */
  getSync? (key: string): Buffer | undefined

  /** Store bytes; `ttlSeconds` > 0 always (expiry set atomically with the value). */
  set (key: string, value: Buffer, ttlSeconds: number): Promise<void>

  /** Store only when the key does not exist; resolves whether it was stored. */
  add (key: string, value: Buffer, ttlSeconds: number): Promise<boolean>

  /** Number of the given keys that existed and were deleted. */
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
  log: import('fastify').FastifyBaseLogger
}
