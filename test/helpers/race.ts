import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Cluster } from 'ioredis'
import type { Test } from 'tap'
import type { ServerCacheOptions } from '../../index.js'
import { withCache, WARN, type LogLine } from './app.js'
import { startMemcached } from './memcached-server.js'
import { startRedisCluster, startRedisServer, type Teardown } from './redis-server.js'

// The cross-instance race (test/cross-instance.test.ts, test/tags-race.test.ts): two app instances
// share one store; instance B starts a slow miss that reads the database and then sleeps; while it
// sleeps, instance A answers a PATCH that changes the data and invalidates. From the moment A's
// PATCH response has arrived, no GET on A or B may return the pre-PATCH data.

/** Options that switch the plugin's guards off (the control race shows what they prevent). */
export const UNGUARDED = Symbol.for('fastify-server-cache.unguarded')
export const ITERATIONS = 100
export const CONTROL_ITERATIONS = 20
/**
 * The slow GET reads its data, waits until the PATCH has been answered, then sleeps this long:
 * the window in which the GETs sent after the PATCH reach instance B.
 */
const SLOW_MS = 80
/** The most the slow GET waits for the PATCH (a failed PATCH must not hang the app's close). */
const GATE_MS = 2000

/** The "database" both instances read: a version per resource, and hooks into the slow read. */
export class Db {
  readonly versions = new Map<string, number>()
  /** Resolved by the slow GET of a resource once it has read the version. */
  readonly reading = new Map<string, () => void>()
  /** Resolved by the test once the PATCH of a resource has been answered. */
  readonly patched = new Map<string, Promise<void>>()
  /** Resources whose slow GET has finished sleeping (its response is on the way). */
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

export function param (request: FastifyRequest, name: string): string {
  return (request.params as Record<string, string>)[name]
}

const isSlow = (request: FastifyRequest): boolean => (request.query as { slow?: string }).slow === '1'

/** A GET handler reading resource `params[name]`; with `?slow=1` (not part of any key) it signals and sleeps. */
export function reader (db: Db, name: string) {
  return async (request: FastifyRequest) => {
    const id = param(request, name)
    const version = db.version(id)
    if (isSlow(request)) {
      db.reading.get(id)?.()
      await Promise.race([db.patched.get(id), sleep(GATE_MS, undefined, { ref: false })])
      await sleep(SLOW_MS)
      db.finished.add(id)
    }
    return { version }
  }
}

export interface Kind {
  name: string
  /** Needs pattern matching (not on Memcached). */
  patterns?: boolean
  /** The GET route and the PATCH route (which invalidates the GET route's entry of resource n). */
  routes (app: FastifyInstance, db: Db): void
  read (n: number): string
  write (n: number): string
}

/** The options of one instance; each call makes that instance's own connection, as another process would. */
export type Connect = (t: Teardown) => Promise<ServerCacheOptions>

export interface SharedStore {
  name: string
  patterns: boolean
  /** Run the unguarded control race on this store. */
  control: boolean
  /** Starts the servers (stopped by `t`'s teardown). */
  start (t: Teardown): Promise<Connect>
}

export const stores: SharedStore[] = [
  {
    name: 'redis',
    patterns: true,
    control: true,
    async start (t) {
      const server = await startRedisServer(t)
      return async () => ({ backend: 'redis', redis: { url: server.url } })
    },
  },
  {
    name: 'redis cluster (3 masters)',
    patterns: true,
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
    patterns: false,
    control: true,
    async start (t) {
      const servers = [await startMemcached(), await startMemcached()]
      for (const server of servers) t.teardown(() => server.stop())
      const list = servers.map((server) => server.address).join(',')
      return async () => ({ backend: 'memcached', memcached: { servers: list } })
    },
  },
]

/** What differs between the test files that race. */
export interface RaceSetup {
  /** Starts every race's keyPrefix (one per file, so that a leftover key names its file). */
  keyPrefix: string
  /** The resource a request to instance B reads, as its routes name it. */
  idOf (request: FastifyRequest): string
}

interface Instance { base: string, logs: LogLine[] }

/**
 * Two instances with the same keyPrefix on the shared store, both serving `kind`'s routes over
 * HTTP. A generous operationTimeout: on a loaded machine a slow store answer must not turn into a
 * BYPASS (which would hide stale entries rather than show them).
 */
async function pair (t: Teardown, connect: Connect, kind: Kind, db: Db, setup: RaceSetup, extra: object = {}): Promise<[Instance, Instance]> {
  const keyPrefix = `${setup.keyPrefix}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`
  const start = async (name: 'A' | 'B'): Promise<Instance> => {
    const options = { ...await connect(t), keyPrefix, operationTimeout: 2000, ...extra } as ServerCacheOptions
    const { app, logs } = await withCache(options)
    t.teardown(() => app.close())
    if (name === 'B') {
      app.addHook('onRequest', async (request) => {
        const id = setup.idOf(request)
        if (!isSlow(request) && db.reading.has(id) && !db.finished.has(id)) db.arrivedInFlight++
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

export interface RaceResult {
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
   * "after A/B" (once it answered), "final A/B" (every resource once more, after all races).
   */
  staleWhere: Record<string, number>
}

/**
 * `iterations` races on fresh resources. `only: 'b'`: after the PATCH, only one GET on B while the
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
  // A late write-back would show here: every resource once more on both instances.
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

export interface Raced extends RaceResult {
  iterations: number
  /** What either instance logged at warn level or above. */
  warnings: string[]
}

export interface RaceOptions {
  /** See `race`. */
  only?: 'b'
  /** More plugin options for both instances. */
  extra?: object
}

/** For one test file: `(t, connect, kind, iterations)` races a fresh pair of instances on a fresh database. */
export function racer (setup: RaceSetup) {
  return async (t: Teardown, connect: Connect, kind: Kind, iterations: number, options: RaceOptions = {}): Promise<Raced> => {
    const db = new Db()
    const [a, b] = await pair(t, connect, kind, db, setup, options.extra)
    const result = await race(a.base, b.base, kind, db, iterations, options.only)
    return { ...result, iterations, warnings: warnings(a, b) }
  }
}

/** Guarded: every race happened, the GET on B overlapped B's slow GET, and no answer was pre-PATCH data. */
export function assertFresh (t: Test, result: Raced): void {
  const { iterations } = result
  t.equal(result.raced, iterations, 'every slow GET on B read and returned the pre-PATCH version (the race happened)')
  t.ok(result.inFlight >= iterations * 0.95, `the GET on B sent after the PATCH reached B while its slow GET was in flight (${result.inFlight} of ${iterations})`)
  t.equal(result.stale, 0, `no pre-PATCH answer after the PATCH (stale: ${JSON.stringify(result.staleWhere)})`)
  t.ok(result.hits > 0, `the shared store served entries (${result.hits} hits)`)
  t.same(result.warnings, [], 'no warnings (nothing ran uncached because of the store)')
}

/** Raced with `only: 'b'`: the GET on B after the PATCH never got B's in-flight fill. */
export function assertNotJoined (t: Test, result: Raced): void {
  const { iterations } = result
  t.equal(result.raced, iterations, 'every slow GET on B returned the pre-PATCH version')
  t.ok(result.inFlight >= iterations * 0.95, `the second GET on B reached B while its slow GET was in flight (${result.inFlight} of ${iterations})`)
  t.equal(result.staleWhere['during B'] ?? 0, 0, "the GET on B sent after the PATCH did not get the in-flight fill's pre-PATCH data")
  t.equal(result.stale, 0, `no pre-PATCH answer after the PATCH (stale: ${JSON.stringify(result.staleWhere)})`)
  t.same(result.warnings, [], 'no warnings')
}

/** The control, raced `extra: { [UNGUARDED]: true }`: without the guards the same race shows stale data. */
export function assertStale (t: Test, result: Raced): void {
  t.equal(result.raced, result.iterations, 'every slow GET on B returned the pre-PATCH version')
  t.ok(result.stale > 0, `unguarded, the race shows stale data (stale: ${result.stale}, ${JSON.stringify(result.staleWhere)})`)
}
