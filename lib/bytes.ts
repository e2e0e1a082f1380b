import * as crypto from 'node:crypto'

/** SHA-1 of `data`, base64url. crypto.hash (one call, no Hash object) is Node >= 20.12; older 20.x take the long way. */
export const sha1: (data: Buffer) => string = typeof crypto.hash === 'function'
  ? (data) => crypto.hash('sha1', data, 'base64url')
  : (data) => crypto.createHash('sha1').update(data).digest('base64url')

/**
 * `bytes[start, end)` in a Buffer of its own size, never a slice of Node's shared 8 KiB pool
 * nor a view of a larger buffer: what is kept long (stored, memoized) must not keep a whole
 * slab or socket buffer alive.
 */
export function ownCopy (bytes: Buffer, start = 0, end = bytes.length): Buffer {
  const copy = Buffer.allocUnsafeSlow(end - start)
  bytes.copy(copy, 0, start, end)
  return copy
}
