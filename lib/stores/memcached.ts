import type { Response } from 'memjs'
import { BackendUnavailableError, InvalidRequestError, PatternMatchingNotSupportedError } from '../errors.js'
import { InFlight } from '../in-flight.js'
import type { MemcachedOptions } from '../schemas.js'
import { buildConnection, Op, request, serverVersion, Status } from './memcached-client.js'
import { decodeEntry, encodeEntry, exptime, isLive, secondsLeft, storeExtras, type Entry } from './memcached-entry.js'
import { KeySpace, MAX_LEVELS, newVersion, VERSION_PATTERN } from './memcached-keys.js'
import type { Store, StoreContext } from './store.js'

/*
 * memcached cannot list keys, so clear() cannot find what to delete, and flush_all would wipe
 * every other user of the servers. Instead every entry under keyPrefix has versions folded into
 * its memcached key: a global one (`<keyPrefix>:~v`) and one per prefix level of the key
 * (`<keyPrefix>:~v:users:` for `<keyPrefix>:users:42`, up to MAX_LEVELS). clear(prefix) writes a
 * new random version for that prefix; the old entries become unreachable and age out (LRU or
 * their own expiry). Versions are random, not counters: a version key lost with its server
 * (restart, eviction) is recreated with a value no old entry was written under, so nothing
 * cleared can come back; losing one only costs misses.
 *
 * Hit-path cost: versions are read from memcached on every operation, never trusted from a
 * process-local cache, because another instance may have cleared a namespace a moment ago.
 * Concurrent lookups share a version read in flight (not one from before a clear of this process).
 * get() stays at one round trip: it remembers the versions it saw last and fetches the entry
 * under them in the same pipelined batch as the versions themselves (for `prefix:widget:42`:
 * three small gets, global version, `widget:` version, entry). The entry is used only if the
 * versions just read are the ones it guessed; after a clear it costs a second round trip once.
 * Writes and the other reads take two round trips (versions, then the entry), plus one the first
 * time a level is used (creating its version). Keys outside keyPrefix (foreign) have no
 * versions: one round trip, and clear() never reaches them.
 */

/** How many version values get() remembers for its guess (one per namespace). */
const GUESS_LIMIT = 1024
/** Rounds of optimistic concurrency (CAS) before giving up on a key others keep rewriting. */
const CAS_ATTEMPTS = 5
/** How long connect() waits for a server to answer `version` (requests keep their own timeout). */
const CONNECT_TIMEOUT_MS = 5000

export function createMemcachedStore (options: MemcachedOptions | undefined, ctx: StoreContext): Store {
  const conn = buildConnection(options, ctx)
  const keys = new KeySpace(ctx.keyPrefix)
  const guesses = new Map<string, string>()
  /** Version reads in flight: concurrent lookups of different keys in one namespace share them. */
  const versionReads = new InFlight<string | undefined>()
  /** Bumped by every clear() of this process: a lookup after it never joins a read from before. */
  let clears = 0

  const send = async (opcode: number, key: string, parts?: Parameters<typeof request>[3]): Promise<Response> => {
    const response = await request(conn, opcode, key, parts)
    const status = response.header.status
    if (status === Status.ok || status === Status.notFound || status === Status.exists || status === Status.notStored) return response
    throw new Error(`memcached ${opName(opcode)} failed: ${STATUS_TEXT[status] ?? `status 0x${status.toString(16)}`}`)
  }

  async function readVersion (versionKey: string): Promise<string | undefined> {
    const response = await send(Op.get, versionKey)
    const value = response.header.status === Status.ok ? response.val.toString('latin1') : undefined
    const valid = value !== undefined && VERSION_PATTERN.test(value) ? value : undefined
    remember(versionKey, valid)
    return valid
  }

  async function ensureVersion (versionKey: string): Promise<string> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const current = await send(Op.get, versionKey)
      const value = current.header.status === Status.ok ? current.val.toString('latin1') : undefined
      if (value !== undefined && VERSION_PATTERN.test(value)) return value
      const fresh = newVersion()
      const extras = Buffer.alloc(8) // no flags, never expires
      // add: another instance creating it at the same moment wins and we read its value;
      // an unreadable value (not ours) is replaced only if still the same (CAS).
      const written = value === undefined
        ? await send(Op.add, versionKey, { extras, value: Buffer.from(fresh) })
        : await send(Op.set, versionKey, { extras, value: Buffer.from(fresh), cas: current.header.cas })
      if (written.header.status === Status.ok) {
        remember(versionKey, fresh)
        return fresh
      }
    }
    throw new Error(`memcached: version key '${versionKey}' keeps changing`)
  }

  function remember (versionKey: string, value: string | undefined): void {
    if (value === undefined) {
      guesses.delete(versionKey)
      return
    }
    if (guesses.size >= GUESS_LIMIT && !guesses.has(versionKey)) guesses.clear()
    guesses.set(versionKey, value)
  }

  function sharedVersion (versionKey: string): Promise<string | undefined> {
    return versionReads.get(versionKey, clears, (since) => since === clears, () => readVersion(versionKey))
  }

  type VersionSource = (versionKey: string) => Promise<string | undefined>

  /** The entry's memcached key, or undefined when a version is missing (so is the entry). */
  async function locate (fullKey: string, version: VersionSource = readVersion): Promise<string | undefined> {
    const info = keys.describe(fullKey)
    const versions = await Promise.all(info.versionKeys.map((k) => version(k)))
    return versions.every((v) => v !== undefined) ? keys.entryKey(info, versions) : undefined
  }

  /** Writes share version reads too; only a missing or foreign version takes the CAS loop. */
  async function writableVersion (versionKey: string): Promise<string> {
    return await sharedVersion(versionKey) ?? await ensureVersion(versionKey)
  }

  async function writableKey (fullKey: string): Promise<string> {
    return (await locate(fullKey, writableVersion)) as string
  }

  async function fetchEntry (memcachedKey: string): Promise<(Entry & { cas: Buffer }) | undefined> {
    const response = await send(Op.get, memcachedKey)
    if (response.header.status !== Status.ok) return undefined
    const entry = decodeEntry(response.val)
    return isLive(entry) ? { ...entry, cas: response.header.cas } : undefined
  }

  async function get (fullKey: string): Promise<Buffer | undefined> {
    const info = keys.describe(fullKey)
    const guessed = info.versionKeys.map((k) => guesses.get(k))
    const speculative = guessed.every((v) => v !== undefined)
      ? fetchEntry(keys.entryKey(info, guessed))
      : undefined
    speculative?.catch(() => {}) // awaited below, or deliberately dropped
    const versions = await Promise.all(info.versionKeys.map(sharedVersion))
    if (!versions.every((v) => v !== undefined)) return undefined
    const entry = speculative !== undefined && versions.every((v, i) => v === guessed[i])
      ? await speculative
      : await fetchEntry(keys.entryKey(info, versions))
    return entry?.value
  }

  async function add (fullKey: string, value: Buffer, ttlSeconds: number): Promise<boolean> {
    const key = await writableKey(fullKey)
    const extras = storeExtras(ttlSeconds)
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const added = await send(Op.add, key, { extras, value: encodeEntry(value, ttlSeconds) })
      if (added.header.status === Status.ok) return true
      // memcached keeps an item up to a second past the expiry in its header (see
      // memcached-entry.ts): such an item is gone for us, so replace it, unless someone else
      // changed it meanwhile (CAS).
      const current = await send(Op.get, key)
      if (current.header.status !== Status.ok) continue
      if (isLive(decodeEntry(current.val))) return false
      const replaced = await send(Op.set, key, { extras, value: encodeEntry(value, ttlSeconds), cas: current.header.cas })
      if (replaced.header.status === Status.ok) return true
    }
    return false
  }

  async function deleteKeys (fullKeys: readonly string[]): Promise<number> {
    // Versions are read once per call, however many keys share them.
    const seen = new Map<string, Promise<string | undefined>>()
    const version: VersionSource = (k) => {
      let pending = seen.get(k)
      if (pending === undefined) {
        pending = readVersion(k)
        seen.set(k, pending)
      }
      return pending
    }
    const deleted = await Promise.all([...new Set(fullKeys)].map(async (fullKey) => {
      const key = await locate(fullKey, version)
      if (key === undefined) return 0
      // Pipelined on one connection, so the get sees the item the delete removes: an item past
      // its header's expiry (still held by memcached for up to a second) is not counted.
      const [current, removed] = await Promise.all([send(Op.get, key), send(Op.delete, key)])
      const wasLive = current.header.status === Status.ok && isLive(decodeEntry(current.val))
      return removed.header.status === Status.ok && wasLive ? 1 : 0
    }))
    return deleted.reduce((a: number, b) => a + b, 0)
  }

  async function expire (fullKey: string, seconds: number): Promise<boolean> {
    const key = await locate(fullKey)
    if (key === undefined) return false
    // Moving the expiry means rewriting the header in the value, so get + replace with CAS: a
    // plain get + set could overwrite a newer value set in between (or resurrect a deleted one)
    // with the old bytes; with CAS such a race just costs another round.
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const entry = await fetchEntry(key)
      if (entry === undefined) return false
      if (entry.expiresAt === 0) {
        // Not written by us (no header): only memcached's own expiry can be moved.
        const touched = await send(Op.touch, key, { extras: exptime(seconds) })
        return touched.header.status === Status.ok
      }
      const replaced = await send(Op.replace, key, { extras: storeExtras(seconds), value: encodeEntry(entry.value, seconds), cas: entry.cas })
      if (replaced.header.status === Status.ok) return true
      if (replaced.header.status === Status.notFound) return false
    }
    throw new Error(`memcached: expire of '${fullKey}' lost ${CAS_ATTEMPTS} races in a row`)
  }

  async function answering (timeout: number): Promise<{ ok: number, failures: string[] }> {
    const results = await Promise.allSettled(conn.client.servers.map((server) => serverVersion(conn, server, timeout)))
    const failures: string[] = []
    results.forEach((result, i) => {
      const server = conn.client.servers[i]
      if (result.status === 'rejected') failures.push(`${server?.host}:${server?.port}: ${(result.reason as Error).message}`)
    })
    return { ok: results.length - failures.length, failures }
  }

  return {
    kind: 'memcached',

    async connect () {
      // Start-up (and recovery probes) may wait longer than a request: a busy machine must not
      // send the app to its fallback because one `version` took 300 ms.
      const { ok, failures } = await answering(Math.max(conn.timeout, CONNECT_TIMEOUT_MS))
      // With several servers, the ones that answer are usable (requests for keys on the others
      // fail and the caller fails open for those); only a wholly unreachable cluster is fatal.
      if (ok === 0) throw new BackendUnavailableError(`memcached: no server answered (${failures.join('; ')})`)
      if (failures.length > 0) ctx.log.warn({ failures }, 'memcached: some servers do not answer')
    },

    get,

    async set (fullKey, value, ttlSeconds) {
      const key = await writableKey(fullKey)
      await send(Op.set, key, { extras: storeExtras(ttlSeconds), value: encodeEntry(value, ttlSeconds) })
    },

    add,

    delete: deleteKeys,

    async exists (fullKey) {
      const key = await locate(fullKey)
      return key !== undefined && (await fetchEntry(key)) !== undefined
    },

    async ttl (fullKey) {
      const key = await locate(fullKey)
      const entry = key === undefined ? undefined : await fetchEntry(key)
      return entry === undefined ? -2 : secondsLeft(entry)
    },

    expire,

    async deletePattern (pattern) {
      throw new PatternMatchingNotSupportedError(
        `memcached cannot match key patterns (it has no way to list keys): '${pattern}'`)
    },

    async clear (prefix) {
      const versionKey = keys.versionKeyForClear(prefix)
      if (versionKey === undefined) {
        throw new InvalidRequestError(
          `memcached can only clear '${keys.root}' or a prefix under it of at most ${MAX_LEVELS} segments ending in ':', got '${prefix}'`)
      }
      // Never flush_all: a new version hides exactly the entries under this prefix.
      clears++
      guesses.delete(versionKey)
      await send(Op.set, versionKey, { extras: Buffer.alloc(8), value: Buffer.from(newVersion()) })
    },

    async ping () {
      try {
        return (await answering(conn.timeout)).ok > 0
      } catch {
        return false
      }
    },

    async close () {
      if (conn.owned) conn.client.close()
    },
  }
}

const STATUS_TEXT: Record<number, string> = {
  0x03: 'value too large',
  0x04: 'invalid arguments',
  0x06: 'incr/decr on a non-numeric value',
  0x20: 'authentication error',
  0x81: 'unknown command',
  0x82: 'out of memory',
}

function opName (opcode: number): string {
  return Object.entries(Op).find(([, code]) => code === opcode)?.[0] ?? `opcode 0x${opcode.toString(16)}`
}
