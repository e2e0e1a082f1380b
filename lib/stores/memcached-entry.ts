import { decodeStamp, encodeStamp, type Stamp } from './guards.js'

// memcached can neither report an item's remaining lifetime nor expire it precisely: its clock
// ticks once a second, so an item set with exptime 1 may vanish a few ms later. The absolute
// expiry therefore travels in front of the bytes, and memcached gets one extra second so that it
// never drops an entry before that header says so. Readers go by the header.

const MAGIC = 0xfe01 // not the codec's 0xFC: this header wraps its bytes
/** The same header followed by the stamp of guards the entry was written under (see guards.ts). */
const MAGIC_GUARDED = 0xfe02
const HEADER_BYTES = 10
/** Above this, memcached reads an exptime as an absolute unix time instead of seconds from now. */
const MAX_RELATIVE_EXPTIME = 60 * 60 * 24 * 30

export interface Entry {
  /** ms since the epoch; 0: no expiry known (a value some other client wrote). */
  expiresAt: number
  value: Buffer
  /** The guards it was written under; undefined for markers (leases) and foreign values. */
  stamp?: Stamp
}

export function encodeEntry (value: Buffer, ttlSeconds: number, stamp?: Stamp, now = Date.now()): Buffer {
  const head = stamp === undefined ? undefined : encodeStamp(stamp)
  const size = HEADER_BYTES + (head?.length ?? 0)
  const out = Buffer.allocUnsafeSlow(size + value.length)
  out.fill(0, 0, HEADER_BYTES)
  out.writeUInt16BE(head === undefined ? MAGIC : MAGIC_GUARDED, 0)
  out.writeUIntBE(now + ttlSeconds * 1000, 2, 6)
  head?.copy(out, HEADER_BYTES)
  value.copy(out, size)
  return out
}

/** A value without our header (written by another client) is returned whole, with no expiry. */
export function decodeEntry (stored: Buffer): Entry {
  const magic = stored.length < HEADER_BYTES ? 0 : stored.readUInt16BE(0)
  if (magic === MAGIC) return { expiresAt: stored.readUIntBE(2, 6), value: stored.subarray(HEADER_BYTES) }
  const decoded = magic === MAGIC_GUARDED ? decodeStamp(stored, HEADER_BYTES) : undefined
  if (decoded !== undefined) return { expiresAt: stored.readUIntBE(2, 6), value: stored.subarray(decoded.end), stamp: decoded.stamp }
  return { expiresAt: 0, value: stored }
}

export function isLive (entry: Entry, now = Date.now()): boolean {
  return entry.expiresAt === 0 || entry.expiresAt > now
}

/** The 4-byte exptime memcached gets for a TTL: one second of slack, absolute past 30 days. */
export function exptime (ttlSeconds: number, now = Date.now()): Buffer {
  const relative = Math.ceil(ttlSeconds) + 1
  const buffer = Buffer.alloc(4)
  buffer.writeUInt32BE(relative > MAX_RELATIVE_EXPTIME ? Math.floor(now / 1000) + relative : relative)
  return buffer
}

/** Extras of set/add/replace: 4 bytes of flags (unused) and the exptime. */
export function storeExtras (ttlSeconds: number): Buffer {
  return Buffer.concat([Buffer.alloc(4), exptime(ttlSeconds)])
}

/** Seconds left as Redis TTL reports them (rounded up, so a live entry never says 0). */
export function secondsLeft (entry: Entry, now = Date.now()): number {
  if (entry.expiresAt === 0) return -1
  return Math.max(1, Math.ceil((entry.expiresAt - now) / 1000))
}
