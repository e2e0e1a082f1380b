import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyReply, FastifyRequest, preParsingHookHandler } from 'fastify'
import type { ResponseEntry } from './codec.js'
import { UNAVAILABLE, type Engine, type ManagedStore } from './engine.js'
import { KeyError } from './keys.js'
import type { RouteCounter } from './stats.js'

/** Request-scoped state, on a symbol so the request object's shape stays stable. */
export const kState = Symbol('fastify-server-cache.state')
export const HIT = 1
export const BYPASS = 2

/** A GET that missed: where its response goes, and what it must check before storing it. */
export interface Miss {
  /** Full key the response is stored under (for `vary` routes: the variant key once known). */
  key: string
  /** engine.invalidations when the lookup ran. */
  seq: number
  /** `vary` routes: the key's variant-set root, the set's token once found, the variant digest. */
  root?: string
  token?: string
  variant?: string
  /** Set when this request leads a coalesced fill that others wait on. */
  flight?: Flight
  /** The cross-instance lease this request holds, released once its response is settled. */
  lease?: string
}
export type RequestState = Miss | typeof HIT | typeof BYPASS | null

/** One in-process fill of a key: concurrent misses wait for its response instead of running. */
export interface Flight {
  seq: number
  /** Resolves the stored entry, or null when the leader's response was not cacheable. */
  done: Promise<ResponseEntry | null>
  settle: (entry: ResponseEntry | null) => void
}

const LEASE = Buffer.from('lease')

/** How long a waiter waits for the leader before running the handler itself. */
const FLIGHT_TIMEOUT_MS = 10_000
const NOT_MODIFIED_HEADERS = ['cache-control', 'vary', 'last-modified']

export interface LookupRoute {
  engine: Engine
  store: ManagedStore
  key: (request: FastifyRequest) => string
  counter: RouteCounter
  /** Lower-case request header names from the route's `vary`. */
  vary: string[]
}

/**
 * The lookup runs as a callback-style `preParsing` hook: after every `onRequest` hook (rate
 * limits, authentication) whatever the registration order, and a hit that replies without
 * calling `done` stops the lifecycle there even when an async onSend hook is still running.
 */
export function makeLookup (route: LookupRoute): preParsingHookHandler {
  const { engine, key } = route
  const header = engine.opts.cacheHeader
  const stats = engine.stats
  const prefix = engine.prefix

  const hit = (request: FastifyRequest, reply: FastifyReply, entry: ResponseEntry): void => {
    request[kState] = HIT
    if (stats.enabled) { stats.hits++; route.counter.hits++ }
    serve(reply, entry, request.headers['if-none-match'], header)
  }
  const missed = (request: FastifyRequest, reply: FastifyReply, k: string, miss: Miss, payload: unknown, done: DoneFn): void => {
    join(route, request, k, miss).then((entry) => {
      if (entry !== null) return hit(request, reply, entry)
      request[kState] = miss
      if (stats.enabled) { stats.misses++; route.counter.misses++ }
      if (header) reply.header(header, 'MISS')
      done(null, payload)
    }, done)
  }
  // The memory store answers synchronously: a hit is served in the same tick, no promise.
  const store = route.store
  const syncStore = store.getSync !== undefined && route.vary.length === 0 ? store as ManagedStore & { getSync: (key: string) => Buffer | undefined } : undefined

  return function cacheLookup (request, reply, payload, done) {
    let k: string
    try {
      k = prefix + key(request)
    } catch (err) {
      if (!(err instanceof KeyError)) return done(err as Error)
      request.log.warn({ reason: err.message }, `Cache key could not be built: ${err.message}; request runs uncached`)
      bypass(engine, request, reply)
      return done(null, payload)
    }
    if (syncStore !== undefined) {
      const seq = engine.invalidations
      const entry = engine.readNow(syncStore, k)
      if (entry?.kind === 'response' && sameVariant(entry, request)) return hit(request, reply, entry)
      return missed(request, reply, k, { key: k, seq }, payload, done)
    }
    find(route, request, k).then((found) => {
      if (found === UNAVAILABLE) {
        bypass(engine, request, reply)
        return done(null, payload)
      }
      if (found.entry !== undefined) return hit(request, reply, found.entry)
      missed(request, reply, k, found.miss, payload, done)
    }, done)
  }
}

type DoneFn = (err?: Error | null, payload?: any) => void

function bypass (engine: Engine, request: FastifyRequest, reply: FastifyReply): void {
  request[kState] = BYPASS
  if (engine.stats.enabled) engine.stats.bypasses++
  if (engine.opts.cacheHeader) reply.header(engine.opts.cacheHeader, 'BYPASS')
}

/** The stored response for this request, or the miss to fill. */
async function find (route: LookupRoute, request: FastifyRequest, k: string): Promise<{ entry?: ResponseEntry, miss: Miss } | typeof UNAVAILABLE> {
  const { engine, store, vary } = route
  const seq = engine.invalidations
  let entry = await engine.read(store, k)
  if (entry === UNAVAILABLE) return UNAVAILABLE
  const miss: Miss = { key: k, seq }
  if (vary.length > 0) {
    // Variants live under `root|token|digest`; deleting the root (any invalidation of the key)
    // orphans all of them at once, on every store, Memcached included.
    miss.root = k
    miss.variant = variantDigest(request, vary)
    miss.key = `${k}|?|${miss.variant}`
    if (entry?.kind === 'variants') {
      miss.token = entry.token
      miss.key = `${k}|${entry.token}|${miss.variant}`
      entry = await engine.read(store, miss.key)
      if (entry === UNAVAILABLE) return UNAVAILABLE
    } else {
      entry = undefined
    }
  }
  if (entry?.kind === 'response' && sameVariant(entry, request)) return { entry, miss }
  return { miss }
}

/**
 * Coalescing: the first miss of a key leads a flight; concurrent misses wait for its response.
 * A flight that an invalidation of the key has overtaken is not joined (its response may
 * predate the write); a GET that cannot join leads a new flight. HEAD requests join but never
 * lead, since their responses are not stored.
 */
async function join (route: LookupRoute, request: FastifyRequest, k: string, miss: Miss): Promise<ResponseEntry | null> {
  const { engine } = route
  const flights = engine.flights
  // The key a flight is known by; a `vary` miss's own key changes once its set's token is known.
  const id = miss.key
  const current = flights.get(id)
  if (current !== undefined && !engine.changedSince(miss.root ?? miss.key, current.seq)) {
    const entry = await current.done
    return entry !== null && sameVariant(entry, request) ? entry : null
  }
  if (request.method !== 'GET') return null
  let settle!: (entry: ResponseEntry | null) => void
  const done = new Promise<ResponseEntry | null>((resolve) => { settle = resolve })
  const flight: Flight = { seq: miss.seq, done, settle }
  // A leader that never reaches onSend (hijacked reply, hung handler) must not hold waiters.
  const timer = setTimeout(() => flight.settle(null), FLIGHT_TIMEOUT_MS)
  timer.unref()
  flight.settle = (entry) => {
    clearTimeout(timer)
    if (flights.get(id) === flight) flights.delete(id)
    settle(entry)
  }
  flights.set(id, flight)
  miss.flight = flight
  if (engine.opts.lease === false || route.store.kind === 'memory') return null
  const filled = await leased(route, request, k, miss)
  if (filled !== null) flight.settle(filled)
  return filled
}

/**
 * Across instances: take the key's lease, or wait (bounded) for the instance holding it to store
 * its response. Resolves that response, or null when this request must run the handler: it holds
 * the lease, the wait ran out, or the store failed (fail-open: run the handler).
 */
async function leased (route: LookupRoute, request: FastifyRequest, k: string, miss: Miss): Promise<ResponseEntry | null> {
  const { engine, store } = route
  const lease = engine.opts.lease as { ttl: number, wait: number, poll: number }
  const leaseKey = miss.key + '|lease'
  const take = async (): Promise<boolean> => {
    try {
      if (!await store.add(leaseKey, LEASE, Math.ceil(lease.ttl / 1000))) return false
      miss.lease = leaseKey
      return true
    } catch (err) {
      engine.failed(err, 'add', leaseKey)
      return true
    }
  }
  if (await take()) return null
  const deadline = Date.now() + lease.wait
  while (Date.now() < deadline) {
    await sleep(lease.poll)
    const found = await find(route, request, k)
    if (found === UNAVAILABLE) return null
    if (found.entry !== undefined) return found.entry
    if (await take()) {
      // The holder may have stored its response and released the lease between our read and
      // our add (another connection, so no ordering between them): look once more before
      // running the handler a second time.
      const again = await find(route, request, k)
      if (again === UNAVAILABLE || again.entry === undefined) return null
      if (miss.lease !== undefined) {
        miss.lease = undefined
        store.delete([leaseKey]).catch((err) => engine.failed(err, 'delete', leaseKey))
      }
      return again.entry
    }
  }
  return null
}

function serve (reply: FastifyReply, entry: ResponseEntry, ifNoneMatch: string | undefined, header: string | false): void {
  const age = Math.max(0, Math.floor((Date.now() - entry.storedAt) / 1000))
  if (header) reply.header(header, 'HIT')
  reply.header('age', age)
  reply.header('etag', entry.etag)
  if (ifNoneMatch !== undefined && etagMatches(ifNoneMatch, entry.etag)) {
    for (const name of NOT_MODIFIED_HEADERS) {
      if (entry.headers[name] !== undefined) reply.header(name, entry.headers[name])
    }
    reply.code(304).send()
    return
  }
  reply.code(entry.status).headers(entry.headers).send(entry.body)
}

/** If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/ prefixes are ignored. */
function etagMatches (ifNoneMatch: string, etag: string): boolean {
  if (ifNoneMatch.trim() === '*') return true
  const tag = etag.startsWith('W/') ? etag.slice(2) : etag
  return ifNoneMatch.split(',').some((t) => {
    const c = t.trim()
    return (c.startsWith('W/') ? c.slice(2) : c) === tag
  })
}

/** Secrets such as `authorization` never appear in keys: the variant is a digest of the values. */
function variantDigest (request: FastifyRequest, vary: string[]): string {
  const hash = createHash('sha256')
  for (const name of vary) hash.update(headerValue(request, name) + '\n')
  return hash.digest('base64url').slice(0, 27)
}

export function headerValue (request: FastifyRequest, name: string): string {
  const v = request.headers[name]
  return v === undefined ? '' : Array.isArray(v) ? v.join(', ') : v
}

/** The response's own `Vary`: served only to requests with the same values as the stored one. */
function sameVariant (entry: ResponseEntry, request: FastifyRequest): boolean {
  if (entry.vary === null) return true
  for (const name in entry.vary) {
    if (headerValue(request, name) !== entry.vary[name]) return false
  }
  return true
}

declare module 'fastify' {
  interface FastifyRequest {
    [kState]: RequestState
  }
}
