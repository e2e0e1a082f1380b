import type { FastifyInstance } from 'fastify'
import { Redis, type Cluster } from 'ioredis'
import { BackendUnavailableError } from '../errors.js'
import { compileGlob, escapeGlob, literalPrefix } from '../glob.js'
import { batchWrites, sentNow } from './batch-writes.js'
import { GUARD_SLACK_SECONDS, newGuard, tagged, validValue } from './guards.js'
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

/** A token of this store: the key's guard as read, undefined when it had none. */
interface RedisToken extends Token { readonly id: string | undefined }

/**
 * A Store on ioredis. Fail-open (timeouts, circuit breaker, fallback) is not done here but by
 * the failover wrapper; this store only has to fail fast, which `enableOfflineQueue: false`
 * gives for the clients it creates.
 */
export function createRedisStore (options: RedisOptions | undefined, ctx: StoreContext & { fastify: FastifyInstance }): Store {
  const { client, owned } = resolveClient(options, ctx.fastify)
  const connectTimeout = options?.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT
  const isCluster = (client as Cluster).isCluster === true

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

  /** Reads an entry and its guard in one round trip (one MGET; two GETs on a Cluster). */
  async function readPair (key: string): Promise<[Buffer | null, Buffer | null]> {
    if (isCluster) {
      sentNow()
      return await Promise.all([client.getBuffer(key), client.getBuffer(guardOf(key))])
    }
    const redis = client as Redis
    if (redis.status === 'ready') batchWrites(redis.stream)
    else sentNow()
    return await redis.mgetBuffer(key, guardOf(key)) as [Buffer | null, Buffer | null]
  }

  async function read (key: string): Promise<Read> {
    const [stored, guard] = await readPair(key)
    const id = guard === null ? undefined : guard.toString('latin1')
    const token: RedisToken = { id }
    return { value: stored === null ? undefined : validValue(stored, id), token }
  }

  /** Runs commands on one key's slot (or the one connection) in order, in one round trip. */
  async function inOrder (commands: Array<[string, ...Array<string | number | Buffer>]>): Promise<unknown[]> {
    const results = await client.pipeline(commands).exec() ?? []
    return results.map(([err, value]) => {
      if (err !== null) throw err
      return value
    })
  }

  /** Writes several keys that may live on different Cluster nodes: in parallel there. */
  async function writeAll (commands: Array<[string, ...Array<string | number | Buffer>]>): Promise<void> {
    if (!isCluster) {
      batchWrites((client as Redis).stream)
      await inOrder(commands)
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
      // SET NX then GET on the same connection: the GET answers the guard in place right after,
      // ours or one created meanwhile; none when an invalidation came in between.
      const guardKey = guardOf(key)
      const [, current] = await inOrder([
        ['set', guardKey, newGuard(), 'EX', ttlSeconds + GUARD_SLACK_SECONDS, 'NX'],
        ['get', guardKey],
      ]) as [unknown, string | null]
      return current === null ? undefined : { id: current } satisfies RedisToken
    },

    async set (key, value, ttlSeconds, token) {
      const guardTtl = ttlSeconds + GUARD_SLACK_SECONDS
      if (token === undefined) {
        // A new current value: a new guard first, so that no fill in flight validates any more.
        const guard = newGuard()
        await writeAll([['set', guardOf(key), guard, 'EX', guardTtl], ['set', key, tagged(guard, value), 'EX', ttlSeconds]])
        return
      }
      if (token === null || token.id === undefined) return
      // EXPIRE never creates: a guard an invalidation deleted meanwhile stays deleted.
      await writeAll([['set', key, tagged(token.id, value), 'EX', ttlSeconds], ['expire', guardOf(key), guardTtl]])
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
      if (token?.id !== undefined) await client.expire(guardOf(key), seconds + GUARD_SLACK_SECONDS)
      return moved === 1
    },

    deletePattern,

    async clear (prefix) {
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
