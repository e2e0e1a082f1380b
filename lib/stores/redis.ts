import type { FastifyInstance } from 'fastify'
import { Redis, type Cluster } from 'ioredis'
import { BackendUnavailableError } from '../errors.js'
import { escapeGlob } from '../glob.js'
import { batchWrites } from './batch-writes.js'
import type { RedisOptions } from '../schemas.js'
import type { Store, StoreContext } from './store.js'

type Client = Redis | Cluster

/** Keys asked for per SCAN round trip and deleted per UNLINK. */
const BATCH = 500
/** ioredis' own default, applied to the whole of connect() (see there). */
const DEFAULT_CONNECT_TIMEOUT = 10_000

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

  async function scanAndUnlink (node: Redis, pattern: string): Promise<number> {
    let deleted = 0
    let cursor = '0'
    // SCAN (not KEYS) so the server never blocks on the whole keyspace; it returns every key
    // that exists for the whole iteration, so deleting as we go misses nothing. Keys come
    // back as Buffers so that a key that is not valid UTF-8 is deleted byte for byte.
    do {
      const [next, keys] = await node.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', BATCH)
      cursor = next.toString()
      deleted += await unlinkOn(node, keys)
    } while (cursor !== '0')
    return deleted
  }

  async function deletePattern (pattern: string): Promise<number> {
    // A Cluster's SCAN only sees the node it is sent to: scan every master.
    const nodes = isCluster ? (client as Cluster).nodes('master') : [client as Redis]
    const counts = await Promise.all(nodes.map((node) => scanAndUnlink(node, pattern)))
    return counts.reduce((a, b) => a + b, 0)
  }

  return {
    kind: 'redis',

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
      if (!isCluster) batchWrites((client as Redis).stream)
      try {
        return (await client.getBuffer(key)) ?? undefined
      } catch (err) {
        // A foreign non-string value under our key: hand back bytes that cannot be decoded,
        // so the layer above treats it as a corrupt entry (miss, delete, warning).
        if (err instanceof Error && err.message.startsWith('WRONGTYPE')) return Buffer.alloc(0)
        throw err
      }
    },

    async set (key, value, ttlSeconds) {
      if (!isCluster) batchWrites((client as Redis).stream)
      await client.set(key, value, 'EX', ttlSeconds)
    },

    async add (key, value, ttlSeconds) {
      return (await client.set(key, value, 'EX', ttlSeconds, 'NX')) === 'OK'
    },

    async delete (keys) {
      if (!isCluster) {
        let deleted = 0
        for (let i = 0; i < keys.length; i += BATCH) deleted += await unlinkOn(client as Redis, keys.slice(i, i + BATCH))
        return deleted
      }
      // Per key, so that ioredis routes each to the master owning its slot.
      const counts = await Promise.all(keys.map((key) => client.unlink(key)))
      return counts.reduce((a, b) => a + b, 0)
    },

    async exists (key) {
      return (await client.exists(key)) === 1
    },

    async ttl (key) {
      return await client.ttl(key)
    },

    async expire (key, seconds) {
      return (await client.expire(key, seconds)) === 1
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
