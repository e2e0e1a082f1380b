import { gunzipSync, gzipSync } from 'node:zlib'
import { ownCopy, sha1 } from './bytes.js'
import { EntryMemo } from './entry-memo.js'

/*
 * The entry format, shared by every store so that entries mean the same everywhere:
 *
 *   byte 0      MAGIC (0xFC) - anything else under our key is foreign or corrupt
 *   byte 1      FORMAT version
 *   byte 2      kind (low 4 bits) | COMPRESSED flag | DIGEST_ETAG flag
 *   response:   uint32 BE meta length, meta JSON, body bytes (gzip when COMPRESSED)
 *   value:      JSON bytes (gzip when COMPRESSED)
 *   variants:   the token of the key's variant set, as UTF-8
 *
 * Only the body is ever compressed: meta stays small, and a reader can tell the kind from three
 * bytes. Decoding is memoized per Buffer instance: the memory store hands back the Buffer it was
 * given, so a hot memory entry is parsed once, not on every hit.
 */
const MAGIC = 0xFC
const FORMAT = 1
const COMPRESSED = 0x10
/**
 * The response's ETag is the SHA-1 of its body (strongEtag, not the handler's own), so its
 * metadata alone tells two such entries apart. Readers from before the flag ignore it.
 */
const DIGEST_ETAG = 0x20
const KIND_RESPONSE = 1
const KIND_VALUE = 2
const KIND_VARIANTS = 3

export interface ResponseEntry {
  kind: 'response'
  status: number
  /** Lower-case names; only headers safe to replay to another client. */
  headers: Record<string, string>
  /** ms since epoch, for the `age` header. */
  storedAt: number
  etag: string
  /** Request header values the response varied on (its own `Vary`), lower-case names. */
  vary: Record<string, string> | null
  body: Buffer
  /** ms since epoch after which it is stale (its route's `expiration`); undefined: fresh until gone. */
  freshUntil?: number
  /** ms of its staleWhileRevalidate and staleIfError windows, when its own Cache-Control shortened the route's. */
  windows?: [number, number]
}

export interface ValueEntry { kind: 'value', value: unknown }
/** Marks a key whose responses are stored per request-header variant (route `vary`). */
export interface VariantsEntry { kind: 'variants', token: string }
export type Entry = ResponseEntry | ValueEntry | VariantsEntry

export class CorruptEntryError extends Error {}

export interface CodecOptions { enabled: boolean, threshold: number }

export class Codec {
  readonly #compress: CodecOptions
  readonly #decoded = new WeakMap<Buffer, Entry>()
  /** Response entries read from remote stores, by content (see EntryMemo). */
  readonly #remote = new EntryMemo<ResponseEntry>()
  /** What the memo decodes with, made once: not a new closure on every remote hit. */
  readonly #decodeResponse = (buf: Buffer): ResponseEntry => this.#decode(buf) as ResponseEntry

  constructor (compression: CodecOptions) {
    this.#compress = compression
  }

  /**
   * `compress: false` for the memory store: it hands back the very Buffer it was given, whose
   * decoded form is memoized, so compressing would only cost CPU on every miss. `digestEtag`:
   * the entry's etag is strongEtag(body).
   */
  encodeResponse (entry: Omit<ResponseEntry, 'kind'>, compress = true, digestEtag = false): Buffer {
    const meta = Buffer.from(JSON.stringify({ s: entry.status, h: entry.headers, t: entry.storedAt, e: entry.etag, v: entry.vary, f: entry.freshUntil, w: entry.windows }))
    const [flag, body] = compress ? this.#maybeCompress(entry.body) : [0, entry.body]
    // A remote store's entry only lives until it is written: from Node's shared pool. The memory
    // store keeps what it is given: an exact allocation, so that it pins no pool slab.
    const out = compress ? joined([HEAD, meta, body], 7 + meta.length + body.length) : exact([HEAD, meta, body], 7 + meta.length + body.length)
    out[2] = KIND_RESPONSE | flag | (digestEtag ? DIGEST_ETAG : 0)
    out.writeUInt32BE(meta.length, 3)
    // Uncompressed, the memo's body is a view of the entry itself: no second copy is kept alive.
    this.#decoded.set(out, { kind: 'response', ...entry, body: flag === 0 ? out.subarray(7 + meta.length) : entry.body })
    return out
  }

  /** Throws a TypeError for values JSON cannot hold. */
  /** undefined when the serialized value is longer than `limit` bytes (it is then not stored). */
  encodeValue (value: unknown, compress = true, limit = Infinity): Buffer | undefined {
    const json = JSON.stringify(value)
    if (json === undefined) throw new TypeError(`value: ${typeof value} cannot be stored (not representable in JSON)`)
    const raw = Buffer.from(json)
    if (raw.length > limit) return undefined
    const [flag, body] = compress ? this.#maybeCompress(raw) : [0, raw]
    const out = exact([HEAD.subarray(0, 3), body], 3 + body.length)
    out[2] = KIND_VALUE | flag
    return out
  }

  encodeVariants (token: string): Buffer {
    const t = Buffer.from(token)
    const out = exact([HEAD.subarray(0, 3), t], 3 + t.length)
    out[2] = KIND_VARIANTS
    return out
  }

  /**
   * Throws CorruptEntryError for anything that is not a whole entry of ours; `key` is where it
   * was read. `remote`: the bytes come from Redis or Memcached, a new Buffer on every read, so
   * remembering the Buffer would only cost a WeakMap entry per hit; responses are shared by
   * content instead (see EntryMemo).
   */
  decode (buf: Buffer, key: string, remote = false): Entry {
    if (remote) {
      // Only responses are shared: a provider value is parsed anew for every caller, who may
      // change the object it gets.
      return buf.length > 2 && (buf[2] & 0x0F) === KIND_RESPONSE
        ? this.#remote.get(key, buf, identifyingBytes(buf), this.#decodeResponse, kept)
        : this.#decode(buf)
    }
    const cached = this.#decoded.get(buf)
    if (cached !== undefined) return cached
    const entry = this.#decode(buf)
    this.#decoded.set(buf, entry)
    return entry
  }

  #decode (buf: Buffer): Entry {
    if (buf.length < 3 || buf[0] !== MAGIC || buf[1] !== FORMAT) throw new CorruptEntryError('not an entry of this plugin')
    const kind = buf[2] & 0x0F
    const compressed = (buf[2] & COMPRESSED) !== 0
    try {
      if (kind === KIND_RESPONSE) {
        const metaLength = buf.readUInt32BE(3)
        if (7 + metaLength > buf.length) throw new CorruptEntryError('truncated')
        const meta = JSON.parse(buf.toString('utf8', 7, 7 + metaLength))
        if (typeof meta.s !== 'number' || typeof meta.h !== 'object' || typeof meta.e !== 'string') throw new CorruptEntryError('bad metadata')
        const raw = buf.subarray(7 + metaLength)
        return { kind: 'response', status: meta.s, headers: meta.h, storedAt: meta.t, etag: meta.e, vary: meta.v ?? null, freshUntil: typeof meta.f === 'number' ? meta.f : undefined, windows: Array.isArray(meta.w) ? meta.w : undefined, body: compressed ? gunzipSync(raw) : raw }
      }
      if (kind === KIND_VALUE) {
        const raw = buf.subarray(3)
        return { kind: 'value', value: JSON.parse((compressed ? gunzipSync(raw) : raw).toString('utf8')) }
      }
      if (kind === KIND_VARIANTS) return { kind: 'variants', token: buf.toString('utf8', 3) }
    } catch (err) {
      if (err instanceof CorruptEntryError) throw err
      throw new CorruptEntryError((err as Error).message)
    }
    throw new CorruptEntryError(`unknown entry kind ${kind}`)
  }

  #maybeCompress (body: Buffer): [number, Buffer] {
    if (!this.#compress.enabled || body.length < this.#compress.threshold || body.length === 0) return [0, body]
    const gz = gzipSync(body, { level: 6 })
    // Incompressible bodies (images, already-gzipped) are kept as they are.
    return gz.length < body.length ? [COMPRESSED, gz] : [0, body]
  }
}

/**
 * How many leading bytes of a response entry tell its content apart from any other entry of the
 * same key: flag, metadata and all, when the etag is a digest of the body; 0 (the whole entry)
 * otherwise, or when the metadata length does not fit (decoding will say it is corrupt).
 */
function identifyingBytes (buf: Buffer): number {
  if ((buf[2] & DIGEST_ETAG) === 0 || buf.length < 7) return 0
  const head = 7 + buf.readUInt32BE(3)
  return head <= buf.length ? head : 0
}

/** Magic and format bytes; kind and lengths are written per entry. */
const HEAD = Buffer.from([MAGIC, FORMAT, 0, 0, 0, 0, 0])

/** Bytes that live only until they are written to a socket: from Node's shared pool, no malloc of their own. */
function joined (parts: Buffer[], length: number): Buffer {
  return copyInto(Buffer.allocUnsafe(length), parts)
}

/**
 * Entries that live long: a Buffer of their own size, never a slice of Node's shared 8 KiB pool,
 * which a small cached entry would otherwise keep alive whole.
 */
function exact (parts: Buffer[], length: number): Buffer {
  return copyInto(Buffer.allocUnsafeSlow(length), parts)
}

function copyInto (out: Buffer, parts: Buffer[]): Buffer {
  let at = 0
  for (const part of parts) at += part.copy(out, at)
  return out
}

/**
 * What the remote-entry memo keeps of an entry: one with a body of its own. An uncompressed body
 * is a view into the bytes read, which a client may have sliced out of a much larger socket buffer.
 */
function kept (entry: ResponseEntry): { value: ResponseEntry, size: number } {
  const body = entry.body
  const own = body.byteOffset === 0 && body.length === body.buffer.byteLength
  return { value: own ? entry : { ...entry, body: ownCopy(body) }, size: body.length }
}

/** A strong validator derived from the exact bytes, computed once when the entry is stored. */
export function strongEtag (body: Buffer): string {
  return '"' + sha1(body) + '"'
}
