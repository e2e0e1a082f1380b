import { CacheConfigurationError } from '../errors.js'
import { ownCopy } from '../bytes.js'
import { compileGlob } from '../glob.js'
import type { Read, Store, Token } from './store.js'

/**
 * Bytes charged per entry on top of its key (2 bytes per UTF-16 unit) and value, so that
 * `maxBytes` bounds what the entries hold of the process's memory, not just their payloads.
 * Measured on Node 20 with 100,000 entries of 1,000 bytes: ~160 bytes of V8 heap per entry
 * beside its key (Map slot, entry object, the Buffer's JS objects) and ~460 bytes of resident
 * memory beside the value itself (the backing store's records and the C allocator's headers).
 * Values are exact allocations (see codec.ts): a small Buffer sliced from Node's shared pool
 * would keep its whole 8 KiB slab alive.
 */
export const ENTRY_OVERHEAD_BYTES = 608

/** Options of {@link MemoryStore}; the plugin's `memory` option, defaults applied. */
export interface MemoryStoreOptions {
  /** Most entries held at once (>= 1). */
  maxEntries: number
  /** Most bytes held at once, as accounted by `bytes` (>= 1). */
  maxBytes: number
  /** ms between passes of the expired-entry sweep; default 1000. */
  sweepIntervalMs?: number
}

interface Entry {
  value: Buffer
  /** Epoch ms; Infinity never expires. */
  expiresAt: number
  bytes: number
  /** Its tags, each with the tag's generation when it was stored. */
  tags?: ReadonlyArray<readonly [string, number]>
  /** `clears` when it was stored (or last found not cleared). */
  born: number
}

/** Cleared prefixes remembered before a clear walks the map once and forgets them. */
const MAX_CLEARED_PREFIXES = 1000

// Each sweep tick checks at least this many entries, and enough that a whole pass over the
// store takes about SWEEP_TICKS_PER_PASS ticks however large it is.
const SWEEP_MIN_BATCH = 1000
const SWEEP_TICKS_PER_PASS = 10

/**
 * A process-local LRU store bounded by entry count and bytes. The Map's insertion order is the
 * recency order (a hit re-inserts its key), so the first key is always the eviction candidate.
 * Expired entries go lazily when touched, and otherwise through one unref'd interval that walks
 * the Map a batch at a time; it runs only while the store holds entries.
 *
 * `get` returns the very Buffer given to `set` (never a copy: the layer above memoizes decoding
 * per Buffer instance), unless that was a view into a larger ArrayBuffer, which is copied once.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const
  readonly local = true
  readonly patterns = true
  readonly batched = false
  private readonly entries = new Map<string, Entry>()
  private readonly maxEntries: number
  private readonly maxBytes: number
  private readonly sweepIntervalMs: number
  private accountedBytes = 0
  private sweepTimer: NodeJS.Timeout | undefined
  private sweepCursor: Iterator<[string, Entry]> | undefined
  /**
   * Tags: invalidating one gives it a new generation (O(1), whatever the number of entries);
   * an entry stored under an older one is dead and goes when next touched. Only tags that live
   * entries carry are remembered (with how many carry them), so the maps stay bounded.
   */
  private readonly tagGenerations = new Map<string, number>()
  private readonly tagUses = new Map<string, number>()
  private generation = 0
  /**
   * clear(prefix) in O(1) too: the prefix is remembered with a new count of clears, and an entry
   * stored before it under that prefix is dead. The hit path pays one comparison
   * (`entry.born === clears`) until the next clear.
   */
  private readonly cleared = new Map<string, number>()
  private clears = 0

  constructor (options: MemoryStoreOptions) {
    this.maxEntries = positiveInteger('memory.maxEntries', options.maxEntries)
    this.maxBytes = positiveInteger('memory.maxBytes', options.maxBytes)
    this.sweepIntervalMs = positiveInteger('memory.sweepIntervalMs', options.sweepIntervalMs ?? 1000)
  }

  /** Number of entries held (expired ones not yet swept included). */
  get size (): number {
    return this.entries.size
  }

  /** Accounted bytes: value bytes + key length × 2 + ENTRY_OVERHEAD_BYTES per entry. */
  get bytes (): number {
    return this.accountedBytes
  }

  async connect (): Promise<void> {}

  async get (key: string): Promise<Buffer | undefined> {
    return this.getSync(key)
  }

  /** One process: invalidations are seen by Engine#changedSince, no guard is needed. */
  async read (key: string, _tags?: readonly string[]): Promise<Read> {
    return { value: this.getSync(key), token: null }
  }

  async prepare (_key: string, token: Token): Promise<Token> {
    return token
  }

  /** `get` without a promise: a memory hit is served without leaving the current tick. */
  getSync (key: string): Buffer | undefined {
    const entry = this.live(key)
    if (entry === undefined) return undefined
    this.entries.delete(key)
    this.entries.set(key, entry)
    return entry.value
  }

  async set (key: string, value: Buffer, ttlSeconds: number, _token?: Token | null, tags: readonly string[] = []): Promise<void> {
    this.put(key, value, ttlSeconds, tags)
  }

  async invalidateTags (tags: readonly string[]): Promise<void> {
    for (const tag of tags) {
      if (this.tagUses.has(tag)) this.tagGenerations.set(tag, ++this.generation)
    }
  }

  async add (key: string, value: Buffer, ttlSeconds: number): Promise<boolean> {
    if (this.live(key) !== undefined) return false
    return this.put(key, value, ttlSeconds)
  }

  async delete (keys: readonly string[]): Promise<number> {
    const now = Date.now()
    let deleted = 0
    for (const key of keys) {
      const entry = this.entries.get(key)
      if (entry === undefined) continue
      if (this.alive(key, entry, now)) deleted++
      this.remove(key, entry)
    }
    return deleted
  }

  async exists (key: string): Promise<boolean> {
    return this.live(key) !== undefined
  }

  async ttl (key: string): Promise<number> {
    const entry = this.live(key)
    if (entry === undefined) return -2
    if (entry.expiresAt === Infinity) return -1
    return Math.ceil((entry.expiresAt - Date.now()) / 1000)
  }

  async expire (key: string, seconds: number): Promise<boolean> {
    const entry = this.live(key)
    if (entry === undefined) return false
    // Redis deletes a key given a non-positive expiry; behave the same.
    if (!(seconds > 0)) this.remove(key, entry)
    else entry.expiresAt = Date.now() + seconds * 1000
    return true
  }

  async deletePattern (pattern: string): Promise<number> {
    // The matcher rejects keys outside the pattern's literal prefix before doing any real work.
    const matches = compileGlob(pattern)
    const now = Date.now()
    let deleted = 0
    // Deleting the current entry while iterating a Map is safe: iteration continues in order.
    for (const [key, entry] of this.entries) {
      if (!matches(key)) continue
      if (this.alive(key, entry, now)) deleted++
      this.remove(key, entry)
    }
    return deleted
  }

  async clear (prefix: string): Promise<void> {
    this.cleared.set(prefix, ++this.clears)
    if (this.cleared.size <= MAX_CLEARED_PREFIXES) return
    // Too many to look up per entry: walk once, drop what they cover, and forget them.
    for (const [key, entry] of this.entries) {
      if (this.wasCleared(key, entry)) this.remove(key, entry)
    }
    this.cleared.clear()
  }

  async ping (): Promise<boolean> {
    return true
  }

  async close (): Promise<void> {
    this.entries.clear()
    this.tagGenerations.clear()
    this.tagUses.clear()
    this.cleared.clear()
    this.accountedBytes = 0
    this.stopSweep()
  }

  /** The entry when present and unexpired; an expired one is removed on the way. */
  private live (key: string): Entry | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (this.alive(key, entry, Date.now())) return entry
    this.remove(key, entry)
    return undefined
  }

  private alive (key: string, entry: Entry, now: number): boolean {
    return entry.expiresAt > now &&
      (entry.tags === undefined || this.tagsCurrent(entry.tags)) &&
      (entry.born === this.clears || !this.wasCleared(key, entry))
  }

  /** Whether a clear() since the entry was stored covers its key (checked prefix by prefix). */
  private wasCleared (key: string, entry: Entry): boolean {
    for (let colon = key.indexOf(':'); colon !== -1; colon = key.indexOf(':', colon + 1)) {
      const at = this.cleared.get(key.slice(0, colon + 1))
      if (at !== undefined && at > entry.born) return true
    }
    entry.born = this.clears
    return false
  }

  private tagsCurrent (tags: ReadonlyArray<readonly [string, number]>): boolean {
    for (const [tag, generation] of tags) {
      if ((this.tagGenerations.get(tag) ?? 0) !== generation) return false
    }
    return true
  }

  /** Stores the entry as most recent and evicts down to the bounds; false when too big. */
  private put (key: string, value: Buffer, ttlSeconds: number, tags: readonly string[] = []): boolean {
    if (!(ttlSeconds > 0)) throw new RangeError(`ttlSeconds: expected a number > 0, got ${ttlSeconds}`)
    const old = this.entries.get(key)
    if (old !== undefined) this.remove(key, old)
    const bytes = value.byteLength + key.length * 2 + ENTRY_OVERHEAD_BYTES
    if (bytes > this.maxBytes) return false

    const entry: Entry = { value: ownBuffer(value), expiresAt: Date.now() + ttlSeconds * 1000, bytes, born: this.clears }
    if (tags.length > 0) {
      entry.tags = tags.map((tag) => [tag, this.tagGenerations.get(tag) ?? 0] as const)
      for (const tag of tags) this.tagUses.set(tag, (this.tagUses.get(tag) ?? 0) + 1)
    }
    this.entries.set(key, entry)
    this.accountedBytes += bytes
    if (this.entries.size > this.maxEntries || this.accountedBytes > this.maxBytes) this.evict()
    this.startSweep()
    return true
  }

  /** Drops least recently used entries; the newest fits by itself, so it is never reached. */
  private evict (): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.accountedBytes <= this.maxBytes) return
      this.remove(key, entry)
    }
  }

  private remove (key: string, entry: Entry): void {
    this.entries.delete(key)
    this.accountedBytes -= entry.bytes
    if (entry.tags === undefined) return
    for (const [tag] of entry.tags) {
      const uses = (this.tagUses.get(tag) ?? 1) - 1
      if (uses > 0) {
        this.tagUses.set(tag, uses)
      } else {
        this.tagUses.delete(tag)
        this.tagGenerations.delete(tag)
      }
    }
  }

  private startSweep (): void {
    if (this.sweepTimer !== undefined) return
    this.sweepTimer = setInterval(() => this.sweep(), this.sweepIntervalMs)
    // A cache must never be what keeps the process alive.
    this.sweepTimer.unref()
  }

  private stopSweep (): void {
    clearInterval(this.sweepTimer)
    this.sweepTimer = undefined
    this.sweepCursor = undefined
  }

  /**
   * One batch of the pass over the Map. The cursor is a live Map iterator, so it stays valid
   * across ticks while entries come and go (a refreshed entry may simply be seen twice).
   */
  private sweep (): void {
    if (this.entries.size === 0) {
      this.stopSweep()
      return
    }
    const now = Date.now()
    let budget = Math.max(SWEEP_MIN_BATCH, Math.ceil(this.entries.size / SWEEP_TICKS_PER_PASS))
    this.sweepCursor ??= this.entries.entries()
    while (budget-- > 0) {
      const next = this.sweepCursor.next()
      if (next.done === true) {
        this.sweepCursor = undefined
        return
      }
      const [key, entry] = next.value
      if (!this.alive(key, entry, now)) this.remove(key, entry)
    }
  }
}

/**
 * The value itself when it is a whole ArrayBuffer of its own (as the codec makes entries for this
 * store), else a copy: a view (a remote store's entry kept by the start-up fallback, a caller's
 * slice) would keep its whole ArrayBuffer, e.g. an 8 KiB pool slab, alive uncharged.
 */
function ownBuffer (value: Buffer): Buffer {
  return value.byteOffset === 0 && value.byteLength === value.buffer.byteLength ? value : ownCopy(value)
}

function positiveInteger (name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new CacheConfigurationError(`${name}: expected an integer >= 1, got ${String(value)}`)
  }
  return value
}
