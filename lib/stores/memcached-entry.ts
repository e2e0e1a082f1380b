import { GUARD_LENGTH } from './guards.js'

// memcached can neither report an item's remaining lifetime nor expire it precisely: its clock
// ticks once a second, so an item set with exptime 1 may vanish a few ms later. The absolute
// expiry therefore travels in front of the bytes, and memcached gets one extra second so that it
// never drops an entry before that header says so. Readers go by the header.

const MAGIC = 0xfe01 // not the codec's 0xFC: this header wraps its bytes
/** The same header followed by the guard the entry was written under (see store.ts). */
const MAGIC_GUARDED = 0xfe02
const HEADER_BYTES = 10
const GUARDED_HEADER_BYTES = HEADER_BYTES + GUARD_LENGTH
/** Above this, memcached reads an exptime as an absolute unix time instead of seconds from now. */
const MAX_RELATIVE_EXPTIME = 60 * 60 * 24 * 30

export interface Entry {
  /** ms since the epoch; 0: no expiry known (a value some other client wrote). */
  expiresAt: number
  value: Buffer
  /** The guard it was written under; undefined for markers (leases) and foreign values. */
  guard?: string
}

export function encodeEntry (value: Buffer, ttlSeconds: number, guard?: string, now = Date.now()): Buffer {
  const size = guard === undefined ? HEADER_BYTES : GUARDED_HEADER_BYTES
  const out = Buffer.allocUnsafeSlow(size + value.length)
  out.fill(0, 0, HEADER_BYTES)
  out.writeUInt16BE(guard === undefined ? MAGIC : MAGIC_GUARDED, 0)
  out.writeUIntBE(now + ttlSeconds * 1000, 2, 6)
  if (guard !== undefined) out.write(guard, HEADER_BYTES, GUARD_LENGTH, 'latin1')
  value.copy(out, size)
  return out
}

/** A value without our header (written by another client) is returned whole, with no expiry. */
export function decodeEntry (stored: Buffer): Entry {
  const magic = stored.length < HEADER_BYTES ? 0 : stored.readUInt16BE(0)
  if (magic === MAGIC) return { expiresAt: stored.readUIntBE(2, 6), value: stored.subarray(HEADER_BYTES) }
  if (magic === MAGIC_GUARDED && stored.length >= GUARDED_HEADER_BYTES) {
    return { expiresAt: stored.readUIntBE(2, 6), value: stored.subarray(GUARDED_HEADER_BYTES), guard: stored.toString('latin1', HEADER_BYTES, GUARDED_HEADER_BYTES) }
  }
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
