import { randomBytes } from 'node:crypto'

/*
 * Guards of shared stores (see store.ts). A guard is random, never a counter: one lost with a
 * restarted or evicting server is recreated with a value no entry was ever tagged with, so
 * losing a guard only costs a miss. Guards outlive the entries they validate by GUARD_SLACK
 * (a fill extends its key's guard along with writing the entry), so that an entry is not cut
 * short by its own guard expiring.
 */

/** Characters of a guard value (hex of 8 random bytes). */
export const GUARD_LENGTH = 16
export const GUARD_SLACK_SECONDS = 60

export function newGuard (): string {
  return randomBytes(GUARD_LENGTH / 2).toString('hex')
}

/** Marks a value tagged with its guard; any other first byte is a value without a tag. */
const TAGGED = 0xFB
const TAG_BYTES = 1 + GUARD_LENGTH

export function tagged (guard: string, value: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(TAG_BYTES + value.length)
  out[0] = TAGGED
  out.write(guard, 1, GUARD_LENGTH, 'latin1')
  value.copy(out, TAG_BYTES)
  return out
}

/**
 * The value if it may be served under `guard` (the key's current guard, undefined when it has
 * none). A value without a tag was not written by a fill of this version (another client, an
 * older release): it is handed back as it is, for the layer above to judge (corrupt, foreign).
 */
export function validValue (stored: Buffer, guard: string | undefined): Buffer | undefined {
  if (stored.length < TAG_BYTES || stored[0] !== TAGGED) return stored
  if (guard === undefined || stored.toString('latin1', 1, TAG_BYTES) !== guard) return undefined
  return stored.subarray(TAG_BYTES)
}
