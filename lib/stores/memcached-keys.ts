import { createHash, randomBytes } from 'node:crypto'

// memcached keys are at most 250 bytes of printable ASCII without spaces (the text protocol
// splits on whitespace; the binary protocol would accept more, but any key we write should be
// readable with `get` over telnet, and other clients may use the text protocol).
const MAX_KEY_BYTES = 250
const PLAIN = /^[\x21-\x7e]{1,250}$/
/**
 * Every hashed key contains this marker and no plain key may, so a key that is already valid can
 * never equal the hashed form of another one; a key that happens to contain it is hashed too.
 */
const HASH_MARKER = '~#'
const READABLE_PART = MAX_KEY_BYTES - HASH_MARKER.length - 64 - 24

/**
 * The memcached key for a storage name: the name itself when it is short printable ASCII,
 * otherwise `<readable sanitized start>~#<sha256 hex of the whole name>`. Injective: plain names
 * map to themselves, hashed ones end in the hash of the full name.
 */
export function memcachedKey (name: string): string {
  if (PLAIN.test(name) && !name.includes(HASH_MARKER)) return name
  let readable = ''
  for (const char of name) {
    if (readable.length >= READABLE_PART) break
    readable += /^[\x21-\x7e]$/.test(char) ? char : '_'
  }
  return `${readable}${HASH_MARKER}${createHash('sha256').update(name, 'utf8').digest('hex')}`
}

/** Random and not a counter, so that a version lost with a restarted server is never reused. */
export function newVersion (): string {
  return randomBytes(6).toString('hex')
}

export const VERSION_PATTERN = /^[0-9a-f]{12}$/

/**
 * Prefix levels (segments ending in ':') after keyPrefix that get a version of their own, so that
 * clear() can hide any of them. Every level costs one more small get per operation (pipelined
 * with the rest); a key deeper than this is still cleared with its first MAX_LEVELS levels, and
 * a clear() of a deeper prefix is refused.
 */
export const MAX_LEVELS = 8

/**
 * How the store names things, for one keyPrefix. Four disjoint classes of storage names:
 * - entries under the prefix: `<prefix>:v<global>.<level 1>.<level 2>:<rest>` (12-hex versions),
 * - version keys: `<prefix>:~v` (global) and `<prefix>:~v:<level>:` ('~' is not 'v': never data),
 * - guards: `<prefix>:~g:<rest>`, one per key, outside the versions (a namespace clear hides the
 *   entries; their guards simply age out), and `<prefix>:~t:<tag>`, one per tag,
 * - foreign keys (not under `<prefix>:`): the key itself, which cannot start with `<prefix>:`.
 */
export class KeySpace {
  readonly root: string
  readonly globalVersionKey: string

  constructor (keyPrefix: string) {
    this.root = `${keyPrefix}:`
    this.globalVersionKey = memcachedKey(`${this.root}~v`)
  }

  /** The version key of a level, `a:b:` for `<prefix>:a:b:` (with its trailing ':'). */
  levelVersionKey (level: string): string {
    return memcachedKey(`${this.root}~v:${level}`)
  }

  /**
   * The version keys a full key depends on: the global one, then one per prefix level of it.
   * `prefix:countries` has no level of its own: it is not inside `prefix:countries:`.
   */
  describe (fullKey: string): KeyInfo {
    if (!fullKey.startsWith(this.root)) return { foreign: true, rest: fullKey, versionKeys: [] }
    const rest = fullKey.slice(this.root.length)
    const versionKeys = [this.globalVersionKey]
    for (let colon = rest.indexOf(':'); colon !== -1 && versionKeys.length <= MAX_LEVELS; colon = rest.indexOf(':', colon + 1)) {
      versionKeys.push(this.levelVersionKey(rest.slice(0, colon + 1)))
    }
    return { foreign: false, rest, versionKeys }
  }

  /** The key's guard; foreign keys have none (they are not the plugin's). */
  guardKey (info: KeyInfo): string | undefined {
    return info.foreign ? undefined : memcachedKey(`${this.root}~g:${info.rest}`)
  }

  /** A tag's guard. */
  tagKey (tag: string): string {
    return memcachedKey(`${this.root}~t:${tag}`)
  }

  /** The memcached key of an entry under the given versions (one per versionKeys entry). */
  entryKey (info: KeyInfo, versions: readonly string[]): string {
    if (info.foreign) return memcachedKey(info.rest)
    return memcachedKey(`${this.root}v${versions.join('.')}:${info.rest}`)
  }

  /**
   * The version to bump for `clear(prefix)`: the global one for `<keyPrefix>:`, a level's for
   * `<keyPrefix>:a:b:`; undefined for a prefix outside keyPrefix or deeper than MAX_LEVELS.
   */
  versionKeyForClear (prefix: string): string | undefined {
    if (prefix === this.root) return this.globalVersionKey
    if (!prefix.startsWith(this.root) || !prefix.endsWith(':')) return undefined
    const level = prefix.slice(this.root.length)
    return level.split(':').length - 1 > MAX_LEVELS ? undefined : this.levelVersionKey(level)
  }
}

export interface KeyInfo {
  foreign: boolean
  /** The key after `<keyPrefix>:`, or the whole key when foreign. */
  rest: string
  /** Global version first, then one per level; empty for a foreign key. */
  versionKeys: string[]
}
