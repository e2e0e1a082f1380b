import { randomBytes } from 'node:crypto'

/*
 * Guards of shared stores (see store.ts). A guard is random, never a counter: one lost with a
 * restarted or evicting server is recreated with a value no entry was ever stamped with, so
 * losing a guard only costs a miss. Key guards outlive the entries they validate by GUARD_SLACK
 * (a fill extends its key's guard along with writing the entry), so that an entry is not cut
 * short by its own guard expiring. Tag guards are shared by many entries: they live
 * tagGuardSeconds() from their creation and are never extended.
 */

/** Characters of a guard value (hex of 8 random bytes). */
export const GUARD_LENGTH = 16
export const GUARD_SLACK_SECONDS = 60
/** At least this, and past the longest expiration (maxExpiration) an entry may have. */
const TAG_GUARD_SECONDS = 8 * 24 * 60 * 60

export function tagGuardSeconds (maxExpiration = 0): number {
  return Math.max(TAG_GUARD_SECONDS, maxExpiration + GUARD_SLACK_SECONDS)
}

/** Random bytes drawn 256 guards at a time: every Redis lookup batch asks for one (see redis-reads.ts). */
const POOL_GUARDS = 256
let pool = Buffer.alloc(0)
let taken = 0

export function newGuard (): string {
  const bytes = GUARD_LENGTH / 2
  if (taken + bytes > pool.length) {
    pool = randomBytes(bytes * POOL_GUARDS)
    taken = 0
  }
  taken += bytes
  return pool.toString('hex', taken - bytes, taken)
}

/** The guards an entry was written under: its key's, and one per tag, by tag name. */
export interface Stamp {
  guard: string
  tags: ReadonlyArray<readonly [name: string, guard: string]>
}

/**
 * `[tag count: u8][key guard][per tag: u16 name length, name (UTF-8), guard]`. The names travel
 * with the entry so that a reader that does not know them (a provider get) can check their
 * guards; a reader that does (a route) has read those guards with the entry already.
 */
export function encodeStamp (stamp: Stamp): Buffer {
  const names = stamp.tags.map(([name]) => Buffer.from(name))
  const out = Buffer.allocUnsafe(1 + GUARD_LENGTH + names.reduce((n, name) => n + 2 + name.length + GUARD_LENGTH, 0))
  out[0] = stamp.tags.length
  let at = 1 + out.write(stamp.guard, 1, GUARD_LENGTH, 'latin1')
  stamp.tags.forEach(([, guard], i) => {
    at = out.writeUInt16BE(names[i].length, at)
    at += names[i].copy(out, at)
    at += out.write(guard, at, GUARD_LENGTH, 'latin1')
  })
  return out
}

/** The stamp at `offset` and where it ends; undefined when the bytes cannot hold one. */
export function decodeStamp (buf: Buffer, offset: number): { stamp: Stamp, end: number } | undefined {
  if (buf.length < offset + 1 + GUARD_LENGTH) return undefined
  const count = buf[offset]
  let at = offset + 1
  const guard = buf.toString('latin1', at, at += GUARD_LENGTH)
  const tags: Array<[string, string]> = []
  for (let i = 0; i < count; i++) {
    if (buf.length < at + 2) return undefined
    const length = buf.readUInt16BE(at)
    at += 2
    if (buf.length < at + length + GUARD_LENGTH) return undefined
    const name = buf.toString('utf8', at, at += length)
    tags.push([name, buf.toString('latin1', at, at += GUARD_LENGTH)])
  }
  return { stamp: { guard, tags }, end: at }
}

/** Marks a Redis value stamped with its guards; any other first byte is a value without one. */
const STAMPED = 0xFB

export function stamped (stamp: Stamp, value: Buffer): Buffer {
  const head = encodeStamp(stamp)
  // From Node's shared pool: it only lives until the command is written.
  const out = Buffer.allocUnsafe(1 + head.length + value.length)
  out[0] = STAMPED
  head.copy(out, 1)
  value.copy(out, 1 + head.length)
  return out
}

/**
 * A stored Redis value, split: the stamp and the value, or no stamp for a value this version of
 * the plugin did not write (another client, an older release), handed back as it is for the
 * layer above to judge (corrupt, foreign).
 */
export function unstamp (stored: Buffer): { stamp?: Stamp, value: Buffer } {
  if (stored[0] !== STAMPED) return { value: stored }
  const decoded = decodeStamp(stored, 1)
  return decoded === undefined ? { value: stored } : { stamp: decoded.stamp, value: stored.subarray(decoded.end) }
}

/**
 * Whether a stamp is valid under the current guards: `guard` of the key and `tagGuard(name)` of
 * each of its tags (undefined when missing).
 */
export function stampValid (stamp: Stamp, guard: string | undefined, tagGuard: (name: string) => string | undefined): boolean {
  if (guard === undefined || stamp.guard !== guard) return false
  for (const [name, expected] of stamp.tags) {
    if (tagGuard(name) !== expected) return false
  }
  return true
}

/** Whether two tag lists are the same names in the same order. */
export function sameTags (a: readonly string[], b: ReadonlyArray<readonly [string, string]>): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i][0]) return false
  return true
}
