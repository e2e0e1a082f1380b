import { ownCopy, sha1 } from './bytes.js'

/** Bytes of decoded entries kept per process. */
const MAX_BYTES = 16 * 1024 * 1024
/** Larger entries are decoded on every read: one of them would push out hundreds of small ones. */
const MAX_ENTRY_BYTES = 256 * 1024
/** Map, key, headers and other metadata per entry, counted against the bound with its size. */
const ENTRY_OVERHEAD = 256
/** Once full, one new key in this many is kept (see get). */
const ADMIT_EVERY = 32

/** What a kept entry was decoded from: a digest of all its bytes, or a copy of its identifying head. */
type Identity = string | Buffer

interface Kept<T> { id: Identity, value: T, size: number }

/**
 * Decoded entries of remote stores, by cache key, each with what identifies the bytes it was
 * decoded from: their first `identifying` bytes when the caller says those tell any two contents
 * apart (a copy of the metadata, whose ETag is a digest of the body: compared, not hashed, on
 * every hit), else a SHA-1 of all of them. Redis and Memcached hand back a new Buffer on every
 * read, so the codec's per-Buffer memo cannot help, and each hit paid the metadata JSON parse
 * and, for a compressed body, a zlib context (allocation and GC included) for the same result.
 * A kept entry is used only for the very bytes it came from, so it can never be stale; a key whose bytes changed (a new fill)
 * replaces its old entry, so nothing dead stays behind after invalidations.
 *
 * Bounded, least recently used out first; but once full, a key not kept yet is kept only one
 * time in ADMIT_EVERY. Plain LRU falls off a cliff when the working set is larger than the
 * bound and read in turn (a many-keys load cycling over its keys): every read would evict the
 * entry needed soonest and nothing would ever be found. Admitting a few keeps most of the kept
 * entries in place for their next read, so such a load still finds about bound / working set of
 * its entries, while a working set that fits is kept whole as before.
 */
export class EntryMemo<T> {
  readonly #entries = new Map<string, Kept<T>>()
  readonly #maxBytes: number
  #bytes = 0
  #declined = 0

  constructor (maxBytes = MAX_BYTES) {
    this.#maxBytes = maxBytes
  }

  /** Bytes kept, overhead included. */
  get bytes (): number {
    return this.#bytes
  }

  /**
   * `decode(bytes)` runs only when these bytes are not what is kept for `key`. `identifying`:
   * how many leading bytes identify the content (0: all of them, digested). `keep` gives what
   * is kept of a result and the memory it holds: a kept result must not hold `bytes` itself,
   * as clients hand back views into their socket buffers.
   */
  get (key: string, bytes: Buffer, identifying: number, decode: (bytes: Buffer) => T, keep: (value: T) => { value: T, size: number }): T {
    if (bytes.length > MAX_ENTRY_BYTES) return decode(bytes)
    let d: string | undefined
    const known = this.#entries.get(key)
    if (known !== undefined) {
      this.#entries.delete(key)
      const id = known.id
      if (typeof id === 'string'
        ? identifying === 0 && id === (d = sha1(bytes))
        : identifying === id.length && bytes.compare(id, 0, identifying, 0, identifying) === 0) {
        this.#entries.set(key, known)
        return known.value
      }
      this.#bytes -= known.size
    } else if (this.#bytes + bytes.length + ENTRY_OVERHEAD > this.#maxBytes && ++this.#declined % ADMIT_EVERY !== 0) {
      return decode(bytes)
    }
    const decoded = decode(bytes)
    const kept = keep(decoded)
    const size = kept.size + ENTRY_OVERHEAD + identifying
    if (size > MAX_ENTRY_BYTES) return decoded
    const id = identifying > 0 ? ownCopy(bytes, 0, identifying) : d ?? sha1(bytes)
    this.#entries.set(key, { id, value: kept.value, size })
    this.#bytes += size
    for (const [k, e] of this.#entries) {
      if (this.#bytes <= this.#maxBytes) break
      this.#entries.delete(k)
      this.#bytes -= e.size
    }
    return kept.value
  }
}
