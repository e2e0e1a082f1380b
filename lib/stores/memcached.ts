import type { Response } from 'memjs'
import { BackendUnavailableError, InvalidRequestError, PatternMatchingNotSupportedError } from '../errors.js'
import { InFlight } from '../in-flight.js'
import type { MemcachedOptions } from '../schemas.js'
import { writeEpoch } from './batch-writes.js'
import { GUARD_LENGTH, GUARD_SLACK_SECONDS, newGuard, sameTags, stampValid, tagGuardSeconds, type Stamp } from './guards.js'
import { buildConnection, Op, request, serverVersion, Status } from './memcached-client.js'
import { decodeEntry, encodeEntry, exptime, isLive, secondsLeft, storeExtras, type Entry } from './memcached-entry.js'
import { KeySpace, MAX_LEVELS, newVersion, VERSION_PATTERN, type KeyInfo } from './memcached-keys.js'
import type { Read, Store, StoreContext, Token } from './store.js'

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
 * Concurrent lookups share a version read only while it has not left the process (the write
 * epoch, see batch-writes.ts), and never one from before a clear of this process.
 * read() stays at one round trip: it remembers the versions it saw last and fetches the entry
 * under them in the same pipelined batch as the versions and the key's guard (for
 * `prefix:widget:42`: four small gets, global version, `widget:` version, guard, entry). The
 * entry is used only if the versions just read are the ones it guessed; after a clear it costs a
 * second round trip once. A fill writes under the versions and guard its lookup read (its
 * token), so a namespace cleared or a key invalidated since, by any instance, hides it: one
 * round trip. Unconditional writes and the other reads take two (versions, then the entry),
 * plus one the first time a level is used (creating its version). Keys outside keyPrefix
 * (foreign) have no versions and no guard: one round trip, and clear() never reaches them.
 */

/** Versions and guards as a read saw them; `id` is defined once all of them exist. */
interface MemcachedToken extends Token {
  readonly versions: ReadonlyArray<string | undefined>
  readonly guard: string | undefined
  readonly tags: readonly string[]
  readonly tagGuards: ReadonlyArray<string | undefined>
}

const GUARD_PATTERN = new RegExp(`^[0-9a-f]{${GUARD_LENGTH}}$`)
const defined = <T>(values: ReadonlyArray<T | undefined>): values is T[] => values.every((v) => v !== undefined)

function tokenOf (info: KeyInfo, versions: ReadonlyArray<string | undefined>, guard: string | undefined, tags: readonly string[], tagGuards: ReadonlyArray<string | undefined>): MemcachedToken {
  if (info.foreign) return { id: 'foreign', versions: [], guard: undefined, tags: [], tagGuards: [] }
  const complete = guard !== undefined && defined(versions) && defined(tagGuards)
  return { id: complete ? `${versions.join('.')}/${guard}/${tagGuards.join('.')}` : undefined, versions, guard, tags, tagGuards }
}

function stampOf (token: MemcachedToken): Stamp | undefined {
  return token.guard === undefined ? undefined : { guard: token.guard, tags: token.tags.map((tag, i) => [tag, token.tagGuards[i] as string]) }
}

/** How many version values get() remembers for its guess (one per namespace). */
const GUESS_LIMIT = 1024
/** Guard keys remembered as existing (see knownGuards); past it, forgotten all at once. */
const KNOWN_GUARDS_LIMIT = 65_536
/** Rounds of optimistic concurrency (CAS) before giving up on a key others keep rewriting. */
const CAS_ATTEMPTS = 5
/** How long connect() waits for a server to answer `version` (requests keep their own timeout). */
const CONNECT_TIMEOUT_MS = 5000

export function createMemcachedStore (options: MemcachedOptions | undefined, ctx: StoreContext): Store {
  const conn = buildConnection(options, ctx)
  const keys = new KeySpace(ctx.keyPrefix)
  const tagTtl = tagGuardSeconds(ctx.maxExpiration)
  const guesses = new Map<string, string>()
  /** Version reads in flight: concurrent lookups of different keys in one namespace share them. */
  const versionReads = new InFlight<string | undefined, { clears: number, epoch: number }>()
  /** Version creations of unconditional writes in flight (see versionAtCall). */
  const creations = new InFlight<string | undefined>()
  /** Bumped by every clear() of this process: a lookup after it never joins a read from before. */
  let clears = 0
  /**
   * Guard keys this process has lately read a guard from. A lookup of a key not among them adds
   * its guard before reading it, in the same batch (see readGuard): a cold miss then needs no
   * prepare round trip, and a hit of a known key sends no add (an add that finds the guard costs
   * memcached a response, which every hit would pay).
   */
  const knownGuards = new Set<string>()

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
    return versionReads.get(versionKey, { clears, epoch: writeEpoch() },
      (since) => since.clears === clears && since.epoch === writeEpoch(), () => readVersion(versionKey))
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

  /**
   * For a value that was current when set() was called: a version created after that (by a
   * clear() since, here or on another instance) must not take it in, so a missing version is
   * only ever created by this call's own `add`. Losing that race drops the write (undefined):
   * a dropped write is a miss later, an entry under a newer version would outlive the clear.
   */
  async function versionAtCall (versionKey: string): Promise<string | undefined> {
    const seen = await sharedVersion(versionKey)
    if (seen !== undefined) return seen
    // Concurrent first writes of a namespace in this process share one creation.
    return await creations.get(versionKey, clears, (since) => since === clears, () => createVersion(versionKey))
  }

  async function createVersion (versionKey: string): Promise<string | undefined> {
    const fresh = newVersion()
    const added = await send(Op.add, versionKey, { extras: Buffer.alloc(8), value: Buffer.from(fresh) })
    if (added.header.status === Status.ok) {
      remember(versionKey, fresh)
      return fresh
    }
    // Not one of our versions (foreign bytes) is replaced as writes always did; a valid one is newer.
    return await readRaw(versionKey, VERSION_PATTERN) === undefined ? await ensureVersion(versionKey) : undefined
  }

  async function fetchEntry (memcachedKey: string): Promise<(Entry & { cas: Buffer }) | undefined> {
    const response = await send(Op.get, memcachedKey)
    if (response.header.status !== Status.ok) return undefined
    const entry = decodeEntry(response.val)
    return isLive(entry) ? { ...entry, cas: response.header.cas } : undefined
  }

  /** A raw value (guard, version) at `key`, if it matches `pattern`. */
  async function readRaw (key: string, pattern: RegExp): Promise<string | undefined> {
    const response = await send(Op.get, key)
    const value = response.header.status === Status.ok ? response.val.toString('latin1') : undefined
    return value !== undefined && pattern.test(value) ? value : undefined
  }

  /**
   * add, then get on the same connection (so in this order at the server): the value in place
   * right after, ours or one created meanwhile; undefined when it was deleted in between.
   * `headStart`: the add is only a head start (see readGuard), its failure is not the caller's.
   */
  async function createOrRead (key: string, value: string, extras: Buffer, pattern: RegExp, headStart = false): Promise<string | undefined> {
    const added = send(Op.add, key, { extras, value: Buffer.from(value) })
    const [, current] = await Promise.all([headStart ? added.catch(() => undefined) : added, readRaw(key, pattern)])
    return current
  }

  /**
   * A guard as read, or, for one not known to exist (`create`: its TTL), as created if missing
   * (what prepare would do next), in the same batch as the rest of the lookup. That add is only
   * a head start: refused (a server out of memory with -M), the read still answers what is
   * there, and a miss's prepare() adds again, failing (and logged) on its own.
   */
  async function readGuard (key: string, create: number | undefined): Promise<string | undefined> {
    const guard = create === undefined || knownGuards.has(key)
      ? await readRaw(key, GUARD_PATTERN)
      : await createOrRead(key, newGuard(), storeExtras(create), GUARD_PATTERN, true)
    if (guard === undefined) {
      knownGuards.delete(key)
    } else {
      if (knownGuards.size >= KNOWN_GUARDS_LIMIT && !knownGuards.has(key)) knownGuards.clear()
      knownGuards.add(key)
    }
    return guard
  }

  async function readEntry (fullKey: string, tags: readonly string[] = [], create?: number): Promise<{ entry: (Entry & { cas: Buffer }) | undefined, valid: boolean, token: MemcachedToken }> {
    const info = keys.describe(fullKey)
    const guardKey = keys.guardKey(info)
    const guessed = info.versionKeys.map((k) => guesses.get(k))
    const speculative = defined(guessed) ? fetchEntry(keys.entryKey(info, guessed)) : undefined
    speculative?.catch(() => {}) // awaited below, or deliberately dropped
    const guards = Promise.all([
      guardKey === undefined ? undefined : readGuard(guardKey, create === undefined ? undefined : create + GUARD_SLACK_SECONDS),
      ...(info.foreign ? [] : tags.map((tag) => readGuard(keys.tagKey(tag), create === undefined ? undefined : tagTtl))),
    ])
    guards.catch(() => {}) // awaited below unless a version read fails first
    const versions = await Promise.all(info.versionKeys.map(sharedVersion))
    const [guard, ...tagGuards] = await guards
    const token = tokenOf(info, versions, guard, tags, tagGuards)
    if (!defined(versions)) return { entry: undefined, valid: false, token }
    const entry = speculative !== undefined && versions.every((v, i) => v === guessed[i])
      ? await speculative
      : await fetchEntry(keys.entryKey(info, versions))
    // A value written under guards is served only under those very guards; one without
    // (foreign, an older release) is handed up as it is.
    const stamp = entry?.stamp
    if (entry === undefined || stamp === undefined) return { entry, valid: entry !== undefined, token }
    let current = tagGuards
    // Written with other tags than this reader's: their guards are one more round trip.
    if (!sameTags(tags, stamp.tags)) current = await Promise.all(stamp.tags.map(([name]) => readRaw(keys.tagKey(name), GUARD_PATTERN)))
    let i = 0
    return { entry, valid: stampValid(stamp, guard, () => current[i++]), token }
  }

  async function read (fullKey: string, tags?: readonly string[], create?: number): Promise<Read> {
    const { entry, valid, token } = await readEntry(fullKey, tags, create)
    return { value: valid ? entry?.value : undefined, token }
  }

  async function prepare (fullKey: string, token: Token, ttlSeconds: number): Promise<Token | undefined> {
    if (token.id !== undefined) return token
    const info = keys.describe(fullKey)
    const seen = token as MemcachedToken
    const guardKey = keys.guardKey(info)
    const [versions, guard, tagGuards] = await Promise.all([
      Promise.all(info.versionKeys.map(async (versionKey, i) => seen.versions[i] ??
        await createOrRead(versionKey, newVersion(), Buffer.alloc(8), VERSION_PATTERN) ??
        // Not one of our versions (foreign bytes): replaced with CAS, as writes do.
        await ensureVersion(versionKey))),
      seen.guard ?? (guardKey === undefined ? undefined : createOrRead(guardKey, newGuard(), storeExtras(ttlSeconds + GUARD_SLACK_SECONDS), GUARD_PATTERN)),
      Promise.all(seen.tags.map((tag, i) => seen.tagGuards[i] ?? createTagGuard(tag))),
    ])
    versions.forEach((v, i) => remember(info.versionKeys[i], v))
    const prepared = tokenOf(info, versions, guard, seen.tags, tagGuards)
    return prepared.id === undefined ? undefined : prepared
  }

  function createTagGuard (tag: string): Promise<string | undefined> {
    return createOrRead(keys.tagKey(tag), newGuard(), storeExtras(tagTtl), GUARD_PATTERN)
  }

  async function set (fullKey: string, value: Buffer, ttlSeconds: number, token?: Token | null, tags: readonly string[] = []): Promise<void> {
    const info = keys.describe(fullKey)
    const guardKey = keys.guardKey(info)
    const guardExtras = storeExtras(ttlSeconds + GUARD_SLACK_SECONDS)
    if (token === undefined) {
      // A new current value: its new guard and its tags' guards are sent before anything else,
      // so that a delete() or invalidateTags() called after this set() reaches the server after
      // them, whatever the entry's own writes wait for.
      const guard = guardKey === undefined ? undefined : newGuard()
      const guardWrite = guardKey === undefined ? undefined : send(Op.set, guardKey, { extras: guardExtras, value: Buffer.from(guard as string) })
      guardWrite?.catch(() => {}) // awaited below
      const tagGuards = Promise.all(info.foreign ? [] : tags.map(createTagGuard))
      tagGuards.catch(() => {}) // awaited below
      const key = await locate(fullKey, versionAtCall)
      const [, current] = await Promise.all([guardWrite, tagGuards])
      // A version created or a tag invalidated after this call: the value is gone with them.
      if (key === undefined || !defined(current)) return
      const stamp = guard === undefined ? undefined : { guard, tags: tags.map((tag, i) => [tag, current[i]] as const) }
      await send(Op.set, key, { extras: storeExtras(ttlSeconds), value: encodeEntry(value, ttlSeconds, stamp) })
      return
    }
    const seen = token as MemcachedToken | null
    if (seen === null || seen.id === undefined) return
    // Under the versions the lookup read: a namespace cleared since hides this entry at once.
    const write = send(Op.set, keys.entryKey(info, seen.versions as string[]), { extras: storeExtras(ttlSeconds), value: encodeEntry(value, ttlSeconds, stampOf(seen)) })
    // touch never creates: a guard an invalidation deleted meanwhile stays deleted.
    await Promise.all([write, guardKey === undefined ? undefined : send(Op.touch, guardKey, { extras: exptime(ttlSeconds + GUARD_SLACK_SECONDS) })])
  }

  async function invalidateTags (tags: readonly string[]): Promise<void> {
    await Promise.all(tags.map((tag) => send(Op.delete, keys.tagKey(tag))))
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
    // Guards first and at once, before anything this call waits for: a set() called earlier sent
    // its guard when it was called, so it reaches the server first and is deleted here; one
    // called later sends a new guard after this delete. The get beside each delete (same
    // connection, just before it) tells which guard the entries were valid under.
    const unique = [...new Set(fullKeys)]
    const guards = unique.map((fullKey) => {
      const guardKey = keys.guardKey(keys.describe(fullKey))
      if (guardKey === undefined) return undefined
      const guard = readRaw(guardKey, GUARD_PATTERN)
      guard.catch(() => {}) // awaited below, unless the delete fails first
      return send(Op.delete, guardKey).then(async () => await guard)
    })
    // The guards are gone before this resolves (a mutation answers only after its invalidation).
    await Promise.all(guards)
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
    const deleted = await Promise.all(unique.map(async (fullKey, i) => {
      const guard = await guards[i]
      const key = await locate(fullKey, version)
      if (key === undefined) return 0
      const current = await fetchEntry(key)
      if (current === undefined) return 0
      // An entry stamped with another guard was written by a set() since (or is dead already):
      // it stays. What goes is only what was read here (CAS), so a newer write always survives.
      if (current.stamp !== undefined && current.stamp.guard !== guard) return 0
      const removed = await send(Op.delete, key, { cas: current.cas })
      return removed.header.status === Status.ok ? 1 : 0
    }))
    return deleted.reduce((a: number, b) => a + b, 0)
  }

  async function expire (fullKey: string, seconds: number): Promise<boolean> {
    const { valid, token } = await readEntry(fullKey)
    if (!valid) return false
    const guardKey = keys.guardKey(keys.describe(fullKey))
    if (guardKey !== undefined && token.guard !== undefined) await send(Op.touch, guardKey, { extras: exptime(seconds + GUARD_SLACK_SECONDS) })
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
      const replaced = await send(Op.replace, key, { extras: storeExtras(seconds), value: encodeEntry(entry.value, seconds, entry.stamp), cas: entry.cas })
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
    local: false,
    patterns: false,
    batched: true,

    async connect () {
      // Start-up (and recovery probes) may wait longer than a request: a busy machine must not
      // send the app to its fallback because one `version` took 300 ms.
      const { ok, failures } = await answering(Math.max(conn.timeout, CONNECT_TIMEOUT_MS))
      // With several servers, the ones that answer are usable (requests for keys on the others
      // fail and the caller fails open for those); only a wholly unreachable cluster is fatal.
      if (ok === 0) throw new BackendUnavailableError(`memcached: no server answered (${failures.join('; ')})`)
      if (failures.length > 0) ctx.log.warn({ failures }, 'memcached: some servers do not answer')
    },

    async get (fullKey) {
      return (await read(fullKey)).value
    },

    read,
    prepare,
    set,
    invalidateTags,

    add,

    delete: deleteKeys,

    async exists (fullKey) {
      return (await readEntry(fullKey)).valid
    },

    async ttl (fullKey) {
      const { entry, valid } = await readEntry(fullKey)
      return entry === undefined || !valid ? -2 : secondsLeft(entry)
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
