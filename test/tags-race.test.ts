import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Cluster } from 'ioredis'
import type { ServerCacheOptions } from '../index.js'
import { withCache, WARN, type LogLine } from './helpers/app.js'
import { startMemcached } from './helpers/memcached-server.js'
import { startRedisCluster, startRedisServer, type Teardown } from './helpers/redis-server.js'

/**
 * "Consistency across instances" (API.md) for tags and namespaces: the race of
 * test/cross-instance.test.ts, with the GET's entry removed only through a tag or a namespace.
 * Two app instances share one store (one keyPrefix, each its own client), as two processes behind
 * a load balancer would. Instance B starts a slow miss that reads the database and then sleeps;
 * while it sleeps, instance A answers a PATCH that changes the data and invalidates the tag
 * `owner:{ownerId}` (or clears the namespace `user_{ownerId}_widgets`). From the moment A's PATCH
 * response has arrived, no GET on A or B may return the pre-PATCH data: not while B's slow miss is
 * in flight, and not after it finished (B must not store what it read before the PATCH).
 *
 * The PATCH never names the GET's key: the tagged GET is keyed `widget:{widgetId}` and the PATCH's
 * own key is `owner_patch`, so only the tag (or namespace) can reach the entry.
 */

const UNGUARDED = Symbol.for('fastify-server-cache.unguarded')
const ITERATIONS = 100
const CONTROL_ITERATIONS = 20
/**
 * The slow GET reads its data, waits until the PATCH has been answered, then sleeps this long:
 * the window in which the GETs sent after the PATCH reach instance B.
 */
const SLOW_MS = 80
/** The most the slow GET waits for the PATCH (a failed PATCH must not hang the app's close). */
const GATE_MS = 2000

/** The "database" both instances read: a version per owner, and hooks into the slow read. */
class Db {
  readonly versions = new Map<string, number>()
  /** Resolved by the slow GET of an owner once it has read the version. */
  readonly reading = new Map<string, () => void>()
  /** Resolved by the test once the PATCH of an owner has been answered. */
  readonly patched = new Map<string, Promise<void>>()
  /** Owners whose slow GET has finished sleeping (its response is on the way). */
  readonly finished = new Set<string>()
  /** Requests (other than the slow GET) that reached instance B while its slow GET was in flight. */
  arrivedInFlight = 0

  version (id: string): number { return this.versions.get(id) ?? 0 }

  bump (id: string): number {
    const next = this.version(id) + 1
    this.versions.set(id, next)
    return next
  }
}

function param (request: FastifyRequest, name: string): string {
  return (request.params as Record<string, string>)[name]
}

/** A GET handler reading owner `params.ownerId`; with `?slow=1` (not part of any key) it signals and sleeps. */
function reader (db: Db) {
  return async (request: FastifyRequest) => {
    const id = param(request, 'ownerId')
    const version = db.version(id)
    if ((request.query as { slow?: string }).slow === '1') {
      db.reading.get(id)?.()
      await Promise.race([db.patched.get(id), sleep(GATE_MS, undefined, { ref: false })])
      await sleep(SLOW_MS)
      db.finished.add(id)
    }
    return { version }
  }
}

interface Kind {
  name: string
  /** The GET route and the PATCH route (which invalidates the GET route's entry of owner n). */
  routes (app: FastifyInstance, db: Db): void
  read (n: number): string
  write (n: number): string
}

/** GET /owners/:ownerId/widgets/:widgetId, keyed widget:{widgetId}, tagged owner:{ownerId}. */
const taggedRoute = (app: FastifyInstance, db: Db): void => {
  app.get('/owners/:ownerId/widgets/:widgetId', {
    config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', tags: ['owner:{ownerId}'] } },
  }, reader(db))
}

const kinds: Kind[] = [
  {
    name: 'invalidateTags',
    routes (app, db) {
      taggedRoute(app, db)
      app.patch('/owners/:ownerId', {
        config: { cache: { keyPrefix: 'owner_patch', resourceIdName: null, invalidateTags: ['owner:{ownerId}'] } },
      }, async (request) => ({ version: db.bump(param(request, 'ownerId')) }))
    },
    // One widget per owner: the key widget:n is the owner's alone.
    read: (n) => `/owners/${n}/widgets/${n}`,
    write: (n) => `/owners/${n}`,
  },
  {
    name: 'invalidateNamespaces',
    routes (app, db) {
      app.get('/owners/:ownerId/widgets', {
        config: { cache: { keyPrefix: 'user_{ownerId}_widgets:page_{page}', resourceIdName: null } },
      }, reader(db))
      app.patch('/owners/:ownerId/widgets/:widgetId', {
        config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', invalidateNamespaces: ['user_{ownerId}_widgets'] } },
      }, async (request) => ({ version: db.bump(param(request, 'ownerId')) }))
    },
    read: (n) => `/owners/${n}/widgets?page=1`,
    write: (n) => `/owners/${n}/widgets/1`,
  },
  {
    name: 'fastify.cache.invalidateTags in the handler',
    routes (app, db) {
      taggedRoute(app, db)
      app.patch('/owners/:ownerId', async (request) => {
        const ownerId = param(request, 'ownerId')
        const version = db.bump(ownerId)
        await request.server.cache.invalidateTags(`owner:${ownerId}`)
        return { version }
      })
    },
    read: (n) => `/owners/${n}/widgets/${n}`,
    write: (n) => `/owners/${n}`,
  },
]

/** The options of one instance; each call makes that instance's own connection, as another process would. */
type Connect = (t: Teardown) => Promise<ServerCacheOptions>

interface SharedStore {
  name: string
  /** Run the unguarded control race on this store. */
  control: boolean
  /** Starts the servers (stopped by `t`'s teardown). */
  start (t: Teardown): Promise<Connect>
}

const stores: SharedStore[] = [
  {
    name: 'redis',
    control: true,
    async start (t) {
      const server = await startRedisServer(t)
      return async () => ({ backend: 'redis', redis: { url: server.url } })
    },
  },
  {
    name: 'redis cluster (3 masters)',
    control: false,
    async start (t) {
      const cluster = await startRedisCluster(t, 3)
      return async (t) => {
        const client = new Cluster(cluster.startupNodes, { lazyConnect: true })
        t.teardown(() => client.disconnect())
        await client.connect()
        return { backend: 'redis', redis: { client } }
      }
    },
  },
  {
    name: 'memcached (2 servers)',
    control: true,
    async start (t) {
      const servers = [await startMemcached(), await startMemcached()]
      for (const server of servers) t.teardown(() => server.stop())
      const list = servers.map((server) => server.address).join(',')
      return async () => ({ backend: 'memcached', memcached: { servers: list } })
    },
  },
]

interface Instance { base: string, logs: LogLine[] }

/**
 * Two instances with the same keyPrefix on the shared store, both serving `kind`'s routes over
 * HTTP. A generous operationTimeout: on a loaded machine a slow store answer must not turn into a
 * BYPASS (which would hide stale entries rather than show them).
 */
async function pair (t: Teardown, connect: Connect, kind: Kind, db: Db, extra: object = {}): Promise<[Instance, Instance]> {
  const keyPrefix = `tr-${process.pid}-${Math.random().toString(36).slice(2, 10)}`
  const start = async (name: 'A' | 'B'): Promise<Instance> => {
    const options = { ...await connect(t), keyPrefix, operationTimeout: 2000, ...extra } as ServerCacheOptions
    const { app, logs } = await withCache(options)
    t.teardown(() => app.close())
    if (name === 'B') {
      app.addHook('onRequest', async (request) => {
        const id = (request.params as Record<string, string>).ownerId
        if ((request.query as { slow?: string }).slow !== '1' && db.reading.has(id) && !db.finished.has(id)) db.arrivedInFlight++
      })
    }
    kind.routes(app, db)
    return { base: await app.listen({ port: 0, host: '127.0.0.1' }), logs }
  }
  return [await start('A'), await start('B')]
}

interface Answer { version: number, cache: string | null }

async function get (url: string): Promise<Answer> {
  const response = await fetch(url)
  if (response.status !== 200) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`)
  return { version: ((await response.json()) as { version: number }).version, cache: response.headers.get('x-cache') }
}

async function patch (url: string): Promise<number> {
  const response = await fetch(url, { method: 'PATCH' })
  if (response.status !== 200) throw new Error(`PATCH ${url}: ${response.status} ${await response.text()}`)
  return ((await response.json()) as { version: number }).version
}

const slowUrl = (url: string): string => `${url}${url.includes('?') ? '&' : '?'}slow=1`

interface RaceResult {
  /** Slow GETs on B that returned the pre-PATCH version (the race did happen). */
  raced: number
  /** GETs sent to B after the PATCH that reached B while its slow GET was in flight. */
  inFlight: number
  /** GETs sent after the PATCH answered that returned pre-PATCH data. */
  stale: number
  /** Of those GETs, how many were served from the store (the cache was in use, not bypassed). */
  hits: number
  /**
   * Where the stale answers came from: "during A/B" (sent while the slow GET was in flight),
   * "after A/B" (once it answered), "final A/B" (every owner once more, after all races).
   */
  staleWhere: Record<string, number>
}

/**
 * `iterations` races on fresh owners. `only: 'b'`: after the PATCH, only one GET on B while the
 * slow GET is in flight (nothing on A could have stored the new data first), then GETs after it.
 */
async function race (a: string, b: string, kind: Kind, db: Db, iterations: number, only?: 'b'): Promise<RaceResult> {
  const result: RaceResult = { raced: 0, inFlight: 0, stale: 0, hits: 0, staleWhere: {} }
  let latest = 0
  const check = (where: string, answer: Answer): void => {
    if (answer.cache === 'HIT') result.hits++
    if (answer.version < latest) {
      result.stale++
      result.staleWhere[where] = (result.staleWhere[where] ?? 0) + 1
    }
  }
  for (let n = 1; n <= iterations; n++) {
    const id = String(n)
    const read = new Promise<void>((resolve) => db.reading.set(id, resolve))
    let answered = (): void => {}
    db.patched.set(id, new Promise<void>((resolve) => { answered = resolve }))
    const slow = get(slowUrl(b + kind.read(n)))
    await read
    latest = await patch(a + kind.write(n))
    answered()
    if (only === 'b') {
      check('during B', await get(b + kind.read(n)))
    } else {
      const [onA, onB] = await Promise.all([get(a + kind.read(n)), get(b + kind.read(n))])
      check('during A', onA)
      check('during B', onB)
    }
    if ((await slow).version === latest - 1) result.raced++
    for (const [where, base] of [['after A', a], ['after B', b]]) {
      check(where, await get(base + kind.read(n)))
    }
  }
  // A late write-back would show here: every owner once more on both instances.
  for (let n = 1; n <= iterations; n++) {
    latest = db.version(String(n))
    const answers = await Promise.all([get(a + kind.read(n)), get(b + kind.read(n))])
    check('final A', answers[0])
    check('final B', answers[1])
  }
  result.inFlight = db.arrivedInFlight
  return result
}

function warnings (...instances: Instance[]): string[] {
  return instances.flatMap((instance) => instance.logs.filter((line) => line.level >= WARN).map((line) => line.msg))
}

// Every store's servers start first (the cluster's set-up blocks this process for a moment);
// then all races run at once, each on its own pair of instances and its own keyPrefix.
t.test('two instances sharing one store: tags and namespaces', { jobs: 32 }, async (t) => {
  const started: Array<[SharedStore, Connect]> = []
  for (const store of stores) started.push([store, await store.start(t)])
  for (const [store, connect] of started) {
    for (const kind of kinds) {
      t.test(`${store.name}, ${kind.name}: once A's PATCH answered, no GET on A or B returns pre-PATCH data (${ITERATIONS} races)`, async (t) => {
        const db = new Db()
        const [a, b] = await pair(t, connect, kind, db)
        const result = await race(a.base, b.base, kind, db, ITERATIONS)
        t.equal(result.raced, ITERATIONS, 'every slow GET on B read and returned the pre-PATCH version (the race happened)')
        t.ok(result.inFlight >= ITERATIONS * 0.95, `the GET on B sent after the PATCH reached B while its slow GET was in flight (${result.inFlight} of ${ITERATIONS})`)
        t.equal(result.stale, 0, `no pre-PATCH answer after the PATCH (stale: ${JSON.stringify(result.staleWhere)})`)
        t.ok(result.hits > 0, `the shared store served entries (${result.hits} hits)`)
        t.same(warnings(a, b), [], 'no warnings (nothing ran uncached because of the store)')
      })
    }

    t.test(`${store.name}, coalescing: a GET on B after A's PATCH (invalidateTags) never joins B's fill that started before it (${ITERATIONS} races)`, async (t) => {
      const db = new Db()
      const [a, b] = await pair(t, connect, kinds[0], db)
      const result = await race(a.base, b.base, kinds[0], db, ITERATIONS, 'b')
      t.equal(result.raced, ITERATIONS, 'every slow GET on B returned the pre-PATCH version')
      t.ok(result.inFlight >= ITERATIONS * 0.95, `the second GET on B reached B while its slow GET was in flight (${result.inFlight} of ${ITERATIONS})`)
      t.equal(result.staleWhere['during B'] ?? 0, 0, "the GET on B sent after the PATCH did not get the in-flight fill's pre-PATCH data")
      t.equal(result.stale, 0, `no pre-PATCH answer after the PATCH (stale: ${JSON.stringify(result.staleWhere)})`)
      t.same(warnings(a, b), [], 'no warnings')
    })

    if (store.control) {
      t.test(`${store.name}, control: with both instances unguarded the same race (invalidateTags) does return pre-PATCH data`, async (t) => {
        const db = new Db()
        const [a, b] = await pair(t, connect, kinds[0], db, { [UNGUARDED]: true })
        const result = await race(a.base, b.base, kinds[0], db, CONTROL_ITERATIONS)
        t.equal(result.raced, CONTROL_ITERATIONS, 'every slow GET on B returned the pre-PATCH version')
        t.ok(result.stale > 0, `unguarded, the race shows stale data (stale: ${result.stale}, ${JSON.stringify(result.staleWhere)})`)
      })
    }
  }
})
