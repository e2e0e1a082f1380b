import type { FastifyInstance } from 'fastify'
import { Redis, type Cluster } from 'ioredis'
import { BackendUnavailableError } from '../errors.js'
import { compileGlob, escapeGlob, literalPrefix } from '../glob.js'
import { batchWrites, sentNow } from './batch-writes.js'
import { BatchedReads } from './redis-reads.js'
import { GUARD_SLACK_SECONDS, newGuard, sameTags, stamped, stampValid, tagGuardSeconds, unstamp } from './guards.js'
import type { RedisOptions } from '../schemas.js'
import type { Read, Store, StoreContext, Token } from './store.js'

type Client = Redis | Cluster

/** Keys asked for per SCAN round trip and deleted per UNLINK. */
const BATCH = 500
/** ioredis' own default, applied to the whole of connect() (see there). */
const DEFAULT_CONNECT_TIMEOUT = 10_000
/**
 * A key's guard lives beside it, under the key plus this suffix. No key of the plugin contains
 * a NUL (placeholder values encode it, provider keys refuse it), so a guard is never an entry.
 * As a suffix, every prefix clear that covers a key covers its guard, and a pattern that
 * matches a key matches its guard once the suffix is appended (see deletePattern).
 */
const GUARD = '\u0000g'
const guardOf = (key: string): string => key + GUARD
const GUARD_BYTES = Buffer.from(GUARD)
const isGuard = (key: Buffer): boolean => key.length > 2 && key[key.length - 2] === 0 && key[key.length - 1] === GUARD_BYTES[1]

/** A token of this store: the guards of the key and of the tags a fill will carry, as read. */
interface RedisToken extends Token {
  readonly guard: string | undefined
  readonly tags: readonly string[]
  readonly tagGuards: ReadonlyArray<string | undefined>
}

function tokenOf (guard: string | undefined, tags: readonly string[], tagGuards: ReadonlyArray<string | undefined>): RedisToken {
  const complete = guard !== undefined && tagGuards.every((g) => g !== undefined)
  return { id: complete ? [guard, ...tagGuards].join('') : undefined, guard, tags, tagGuards }
}

const text = (buf: Buffer | string | null): string | undefined => buf === null ? undefined : buf.toString('latin1')
type Command = [string, ...Array<string | number | Buffer>]
/** Marks a namespace level among the tags (user tags never hold a NUL). */
const LEVEL = '\u0000n:'
/** Prefix levels of a key that get a guard of their own, as on Memcached. */
const MAX_LEVELS = 8

/**
 * A Store on ioredis. Fail-open (timeouts, circuit breaker, fallback) is not done here but by
 * the failover wrapper; this store only has to fail fast, which `enableOfflineQueue: false`
 * gives for the clients it creates.
 */
export function createRedisStore (options: RedisOptions | undefined, ctx: StoreContext & { fastify: FastifyInstance }): Store {
  const { client, owned } = resolveClient(options, ctx.fastify)
  const connectTimeout = options?.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT
  const isCluster = (client as Cluster).isCluster === true
  // Tag guards live under the prefix too (clear() of everything takes them along), behind a NUL
  // that no key of the plugin has.
  const tagKey = (tag: string): string => `${ctx.keyPrefix}:\u0000t:${tag}`
  const root = `${ctx.keyPrefix}:`
  const tagTtl = tagGuardSeconds(ctx.maxExpiration)
  const reads = isCluster ? undefined : new BatchedReads(client as Redis, tagTtl)

  /**
   * Namespaces are tags every key carries implicitly: one per prefix level (`user_7_widgets:` of
   * `<keyPrefix>:user_7_widgets:page_1`, up to MAX_LEVELS), named with a NUL that no user tag
   * has. clear() of a namespace then deletes one guard instead of scanning the keyspace.
   */
  function withLevels (key: string, tags: readonly string[]): readonly string[] {
    if (!key.startsWith(root)) return tags
    const levels: string[] = []
    for (let colon = key.indexOf(':', root.length); colon !== -1 && levels.length < MAX_LEVELS; colon = key.indexOf(':', colon + 1)) {
      levels.push(LEVEL + key.slice(root.length, colon + 1))
    }
    return levels.length === 0 ? tags : [...levels, ...tags]
  }

  async function unlinkOn (node: Redis, keys: ReadonlyArray<string | Buffer>): Promise<number> {
    if (keys.length === 0) return 0
    if (!isCluster) return await node.unlink(...keys)
    // Redis Cluster refuses a multi-key command whose keys hash to different slots
    // (CROSSSLOT), even on one node: one UNLINK per key, pipelined into one round trip.
    const pipeline = node.pipeline()
    for (const key of keys) pipeline.unlink(key)
    let deleted = 0
    for (const [err, count] of await pipeline.exec() ?? []) {
      if (err !== null) throw err
      deleted += count as number
    }
    return deleted
  }

  /** Deletes keys matched by `keep` among those SCAN returns for `match`. */
  async function scanAndUnlink (node: Redis, match: string, keep?: (key: Buffer) => boolean): Promise<number> {
    let deleted = 0
    let cursor = '0'
    // SCAN (not KEYS) so the server never blocks on the whole keyspace; it returns every key
    // that exists for the whole iteration, so deleting as we go misses nothing. Keys come
    // back as Buffers so that a key that is not valid UTF-8 is deleted byte for byte.
    // Guards are deleted too but not counted: callers count the keys they know of.
    do {
      const [next, found] = await node.scanBuffer(cursor, 'MATCH', match, 'COUNT', BATCH)
      cursor = next.toString()
      const keys = keep === undefined ? found : found.filter(keep)
      const guards = keys.filter(isGuard)
      await unlinkOn(node, guards)
      deleted += await unlinkOn(node, guards.length === 0 ? keys : keys.filter((k) => !isGuard(k)))
    } while (cursor !== '0')
    return deleted
  }

  async function deletePattern (pattern: string): Promise<number> {
    // The guards of the matched keys must go too, including guards of keys that have no entry
    // yet (a fill in flight). A pattern that ends in '*' matches them as it is. Any other one
    // (appending '*' could change its meaning: a trailing '\\', an unclosed '[') is matched
    // here, over a SCAN of the keys that start with its literal prefix.
    const whole = endsInStar(pattern)
    const matches = whole ? undefined : compileGlob(pattern)
    const match = whole ? pattern : escapeGlob(literalPrefix(pattern)) + '*'
    const keep = matches === undefined
      ? undefined
      : (raw: Buffer): boolean => {
          const key = raw.toString()
          return matches(key) || (key.endsWith(GUARD) && matches(key.slice(0, -GUARD.length)))
        }
    // A Cluster's SCAN only sees the node it is sent to: scan every master.
    const nodes = isCluster ? (client as Cluster).nodes('master') : [client as Redis]
    const counts = await Promise.all(nodes.map((node) => scanAndUnlink(node, match, keep)))
    return counts.reduce((a, b) => a + b, 0)
  }

  /** Several keys in one round trip: one MGET, or GETs sent together on a Cluster. */
  async function getMany (keys: string[]): Promise<Array<Buffer | null>> {
    if (isCluster) {
      sentNow()
      return await Promise.all(keys.map((key) => client.getBuffer(key)))
    }
    const redis = client as Redis
    if (redis.status === 'ready') batchWrites(redis.stream)
    else sentNow()
    return await redis.mgetBuffer(...keys)
  }

  async function read (key: string, own: readonly string[] = [], create?: number): Promise<Read> {
    const tags = withLevels(key, own)
    const keys = [key, guardOf(key), ...tags.map(tagKey)]
    // Not on a Cluster (the guards live in other slots than the entry): there prepare() creates them.
    const [stored, guardBuf, ...tagBufs] = create === undefined || reads === undefined ? await getMany(keys) : await reads.read(keys, create + GUARD_SLACK_SECONDS)
    const guard = text(guardBuf)
    const tagGuards = tagBufs.map(text)
    const token = tokenOf(guard, tags, tagGuards)
    if (stored === null) return { value: undefined, token }
    const { stamp, value } = unstamp(stored)
    if (stamp === undefined) return { value, token }
    let current = tagGuards
    // Written with other tags than this reader's (another route, a provider value): their
    // guards are one more round trip.
    if (!sameTags(tags, stamp.tags)) current = stamp.tags.length === 0 ? [] : (await getMany(stamp.tags.map(([name]) => tagKey(name)))).map(text)
    let i = 0
    return { value: stampValid(stamp, guard, () => current[i++]) ? value : undefined, token }
  }

  /**
   * SET NX then GET of a guard on one connection (so in this order at the server): the guard in
   * place right after, ours or one created meanwhile; undefined when deleted in between.
   */
  async function createOrRead (guardKey: string, ttlSeconds: number): Promise<string | undefined> {
    const [, current] = await inOrder([['set', guardKey, newGuard(), 'EX', ttlSeconds, 'NX'], ['get', guardKey]])
    return text(current as string | null)
  }

  async function unlinkGuards (guardKeys: string[]): Promise<void> {
    if (guardKeys.length === 0) return
    if (!isCluster) {
      await (client as Redis).unlink(...guardKeys)
      return
    }
    await Promise.all(guardKeys.map((guardKey) => client.unlink(guardKey)))
  }

  /** Runs commands on one key's slot (or the one connection) in order, in one round trip. */
  async function inOrder (commands: Command[]): Promise<unknown[]> {
    const results = await client.pipeline(commands).exec() ?? []
    return results.map(([err, value]) => {
      if (err !== null) throw err
      return value
    })
  }

  /** Writes several keys that may live on different Cluster nodes: in parallel there. */
  async function writeAll (commands: Command[]): Promise<void> {
    if (!isCluster) {
      // Plain commands on the one connection keep their order, as a pipeline would, without
      // building one (its object, promise and result array cost a fill more than the writes).
      batchWrites((client as Redis).stream)
      await Promise.all(commands.map(([name, ...args]) => client.call(name, ...args)))
      return
    }
    await Promise.all(commands.map(async (command) => await inOrder([command])))
  }

  return {
    kind: 'redis',
    local: false,
    patterns: true,
    batched: !isCluster,

    async connect () {
      // ioredis rejects connect() with a bare "Connection is closed."; the 'error' event has
      // the reason (ECONNREFUSED, ETIMEDOUT, NOAUTH ...), which is what a warning should say.
      let reason: Error | undefined
      const onError = (err: Error): void => { reason = err }
      client.on('error', onError)
      try {
        await withTimeout(async () => {
          // Only a client that never connected is connected here; one that is reconnecting
          // (ours, or the user's) is left to its retryStrategy and just asked for a PING.
          if (client.status === 'wait') await client.connect()
          await client.ping()
        }, connectTimeout)
      } catch (err) {
        const cause = reason ?? err
        throw new BackendUnavailableError(`redis: cannot connect to ${describe(client)}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
      } finally {
        client.off('error', onError)
      }
    },

    async get (key) {
      return (await read(key)).value
    },

    read,

    async prepare (key, token, ttlSeconds) {
      if (token.id !== undefined) return token
      const seen = token as RedisToken
      const [guard, ...tagGuards] = await Promise.all([
        seen.guard ?? createOrRead(guardOf(key), ttlSeconds + GUARD_SLACK_SECONDS),
        ...seen.tags.map((tag, i) => seen.tagGuards[i] ?? createOrRead(tagKey(tag), tagTtl)),
      ])
      const prepared = tokenOf(guard, seen.tags, tagGuards)
      return prepared.id === undefined ? undefined : prepared
    },

    async set (key, value, ttlSeconds, token, own = []) {
      const tags = withLevels(key, own)
      const guardTtl = ttlSeconds + GUARD_SLACK_SECONDS
      if (token === undefined) {
        // A new current value: a new key guard, and the tags' guards as they are, both sent at
        // once, so that an invalidation called after this set() reaches the server after them.
        const guard = newGuard()
        const guardWrite = writeAll([['set', guardOf(key), guard, 'EX', guardTtl]])
        const tagGuards = Promise.all(tags.map((tag) => createOrRead(tagKey(tag), tagTtl)))
        tagGuards.catch(() => {}) // awaited below
        await guardWrite
        const current = await tagGuards
        // A tag invalidated in between: this value is gone with it.
        if (current.some((g) => g === undefined)) return
        await writeAll([['set', key, stamped({ guard, tags: tags.map((tag, i) => [tag, current[i] as string]) }, value), 'EX', ttlSeconds]])
        return
      }
      const seen = token as RedisToken | null
      if (seen === null || seen.id === undefined || seen.guard === undefined) return
      const stamp = { guard: seen.guard, tags: seen.tags.map((tag, i) => [tag, seen.tagGuards[i] as string] as const) }
      // EXPIRE never creates: a guard an invalidation deleted meanwhile stays deleted.
      await writeAll([['set', key, stamped(stamp, value), 'EX', ttlSeconds], ['expire', guardOf(key), guardTtl]])
    },

    async invalidateTags (tags) {
      await unlinkGuards(tags.map(tagKey))
    },

    async add (key, value, ttlSeconds) {
      return (await client.set(key, value, 'EX', ttlSeconds, 'NX')) === 'OK'
    },

    async delete (keys) {
      if (!isCluster) {
        let deleted = 0
        for (let i = 0; i < keys.length; i += BATCH) {
          const batch = keys.slice(i, i + BATCH)
          const [, entries] = await inOrder([['unlink', ...batch.map(guardOf)], ['unlink', ...batch]]) as [number, number]
          deleted += entries
        }
        return deleted
      }
      // Per key, so that ioredis routes each to the master owning its slot.
      const counts = await Promise.all(keys.map(async (key) => {
        const [, entry] = await Promise.all([client.unlink(guardOf(key)), client.unlink(key)])
        return entry
      }))
      return counts.reduce((a, b) => a + b, 0)
    },

    async exists (key) {
      return (await read(key)).value !== undefined
    },

    async ttl (key) {
      if ((await read(key)).value === undefined) return -2
      return await client.ttl(key)
    },

    async expire (key, seconds) {
      const { value, token } = await read(key)
      if (value === undefined) return false
      const moved = await client.expire(key, seconds)
      if ((token as RedisToken).guard !== undefined) await client.expire(guardOf(key), seconds + GUARD_SLACK_SECONDS)
      return moved === 1
    },

    deletePattern,

    async clear (prefix) {
      const level = prefix.slice(root.length)
      // A namespace: its level guard goes, and every entry under it with it, whatever their
      // number; they age out. Everything (or a level deeper than any key records): scanned.
      if (prefix.startsWith(root) && level.length > 0 && level.endsWith(':') && level.split(':').length - 1 <= MAX_LEVELS) {
        await unlinkGuards([tagKey(LEVEL + level)])
        return
      }
      await deletePattern(escapeGlob(prefix) + '*')
    },

    async ping () {
      try {
        return (await client.ping()) === 'PONG'
      } catch {
        return false
      }
    },

    async close () {
      if (!owned) return
      // quit() waits for a reply a dead server never sends; disconnect() also stops the
      // reconnection timer.
      if (client.status === 'ready') await client.quit().catch(() => client.disconnect())
      else client.disconnect()
    },
  }
}

/**
 * The one place a client is chosen: the user's, @fastify/redis's, or one we create (and own).
 */
function resolveClient (options: RedisOptions | undefined, fastify: FastifyInstance): { client: Client, owned: boolean } {
  if (options?.client !== undefined) return { client: options.client, owned: false }
  const decorated = fastify.hasDecorator('redis') ? (fastify as unknown as { redis: unknown }).redis : undefined
  // @fastify/redis registered with a `namespace` decorates an object of clients: not reusable.
  if (options === undefined && isClient(decorated)) return { client: decorated, owned: false }

  const { url, tls, client: _, ...connection } = options ?? {}
  const settings = {
    ...connection,
    ...(tls === true ? { tls: {} } : typeof tls === 'object' ? { tls } : {}),
    // connect() is where we connect, so that an unreachable server rejects there.
    lazyConnect: true,
    // Fail fast while disconnected instead of queueing until the server is back.
    enableOfflineQueue: false,
    // Reject in-flight commands as soon as the connection drops, and never send them again
    // after a reconnection: the layer above has long given up on them.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // Keep reconnecting in the background for as long as the app runs.
    retryStrategy: (attempt: number) => Math.min(attempt * 100, 2000),
  }
  // Where `url` and an explicit field both give a value, ioredis takes the url's.
  const client = url === undefined ? new Redis(settings) : new Redis(url, settings)
  // Connection errors surface as rejected commands; the failover wrapper logs the outage.
  // Without a listener ioredis would print every reconnection attempt to stderr.
  client.on('error', () => {})
  return { client, owned: true }
}

function describe (client: Client): string {
  if ((client as Cluster).isCluster === true) return 'the cluster'
  const { host, port, path } = (client as Redis).options
  return path ?? `${host ?? 'localhost'}:${port ?? 6379}`
}

/** Whether a glob ends in a '*' that is not escaped (preceded by an even run of backslashes). */
function endsInStar (pattern: string): boolean {
  if (!pattern.endsWith('*')) return false
  let backslashes = 0
  for (let i = pattern.length - 2; i >= 0 && pattern[i] === '\\'; i--) backslashes++
  return backslashes % 2 === 0
}

function isClient (value: unknown): value is Client {
  return typeof value === 'object' && value !== null &&
    typeof (value as Redis).getBuffer === 'function' && typeof (value as Redis).scan === 'function'
}

async function withTimeout (run: () => Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within connectTimeout (${ms} ms)`)), ms)
  })
  try {
    await Promise.race([run(), timeout])
  } finally {
    clearTimeout(timer)
  }
}
