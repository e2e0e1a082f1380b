import * as crypto from 'node:crypto'
import { gunzipSync } from 'node:zlib'

/** Bytes of inflated bodies kept per process; the least recently used go first past it. */
const MAX_BYTES = 16 * 1024 * 1024
/** Larger bodies are inflated on every read: one of them would push out hundreds of small ones. */
const MAX_ENTRY_BYTES = 256 * 1024
/** Map and key overhead per body, counted against MAX_BYTES. */
const ENTRY_OVERHEAD = 128

// crypto.hash (one call, no Hash object) is Node >= 20.12; older 20.x take the long way.
const digest: (data: Buffer) => string = typeof crypto.hash === 'function'
  ? (data) => crypto.hash('sha1', data, 'base64')
  : (data) => crypto.createHash('sha1').update(data).digest('base64')

/**
 * Inflated bodies of compressed entries, keyed by a digest of the compressed bytes. A remote
 * store hands back a new Buffer on every read, so the codec's per-Buffer memo cannot help, and
 * each hit of a gzipped entry paid a zlib context (allocation and GC included) for the same
 * result. Keyed by content, never by cache key or ETag, a body here can never be stale: a
 * changed entry has other bytes.
 */
export class InflatedBodies {
  readonly #bodies = new Map<string, Buffer>()
  #bytes = 0

  inflate (gz: Buffer): Buffer {
    if (gz.length > MAX_ENTRY_BYTES) return gunzipSync(gz)
    const key = digest(gz)
    const known = this.#bodies.get(key)
    if (known !== undefined) {
      this.#bodies.delete(key)
      this.#bodies.set(key, known)
      return known
    }
    const body = gunzipSync(gz)
    if (body.length > MAX_ENTRY_BYTES) return body
    this.#bodies.set(key, body)
    this.#bytes += body.length + ENTRY_OVERHEAD
    for (const [k, b] of this.#bodies) {
      if (this.#bytes <= MAX_BYTES) break
      this.#bodies.delete(k)
      this.#bytes -= b.length + ENTRY_OVERHEAD
    }
    return body
  }
}
