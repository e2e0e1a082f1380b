import * as crypto from 'node:crypto'

/** Bytes of decoded entries kept per process; the least recently used go first past it. */
const MAX_BYTES = 16 * 1024 * 1024
/** Larger entries are decoded on every read: one of them would push out hundreds of small ones. */
const MAX_ENTRY_BYTES = 256 * 1024
/** Map, key, headers and other metadata per entry, counted against MAX_BYTES with its size. */
const ENTRY_OVERHEAD = 256

// crypto.hash (one call, no Hash object) is Node >= 20.12; older 20.x take the long way.
const digest: (data: Buffer) => string = typeof crypto.hash === 'function'
  ? (data) => crypto.hash('sha1', data, 'base64')
  : (data) => crypto.createHash('sha1').update(data).digest('base64')

/**
 * Decoded entries of remote stores, keyed by a digest of the stored bytes. Redis and Memcached
 * hand back a new Buffer on every read, so the codec's per-Buffer memo cannot help, and each
 * hit paid the metadata JSON parse and, for a compressed body, a zlib context (allocation and
 * GC included) for the same result. Keyed by content, never by cache key or ETag, an entry here
 * can never be stale: a changed entry has other bytes.
 */
export class EntryMemo<T> {
  readonly #entries = new Map<string, { value: T, size: number }>()
  #bytes = 0

  /**
   * `decode(bytes)` runs only when these bytes were not seen (or were evicted). `keep` gives
   * what is kept of a result and the memory it holds: a kept result must not hold `bytes`
   * itself, as clients hand back views into their socket buffers.
   */
  get (bytes: Buffer, decode: (bytes: Buffer) => T, keep: (value: T) => { value: T, size: number }): T {
    if (bytes.length > MAX_ENTRY_BYTES) return decode(bytes)
    const key = digest(bytes)
    const known = this.#entries.get(key)
    if (known !== undefined) {
      this.#entries.delete(key)
      this.#entries.set(key, known)
      return known.value
    }
    const decoded = decode(bytes)
    const kept = keep(decoded)
    kept.size += ENTRY_OVERHEAD
    if (kept.size > MAX_ENTRY_BYTES) return decoded
    this.#entries.set(key, kept)
    this.#bytes += kept.size
    for (const [k, e] of this.#entries) {
      if (this.#bytes <= MAX_BYTES) break
      this.#entries.delete(k)
      this.#bytes -= e.size
    }
    return kept.value
  }
}
