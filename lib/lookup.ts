import type { FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify'
import type { ResponseEntry } from './codec.js'
import { join } from './coalesce.js'
import { UNAVAILABLE, type ManagedStore } from './engine.js'
import { find, needsPrepare, prepareMiss, type LookupRoute } from './find.js'
import { KeyError } from './keys.js'
import { HIT, kState, type Miss } from './request-state.js'
import type { Refreshed, Refresher } from './refresh.js'
import { bypass, CACHE_STATUS, serve } from './serve.js'
import { sameVariant } from './variants.js'

export type { LookupRoute } from './find.js'

type DoneFn = (err?: Error) => void
/** Headers of an injected response that describe its own connection, not the content. */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'date'])
const NO_TAGS: readonly string[] = []
/** found() replied (fresh or stale): the lifecycle ends there. */
const SERVED = Symbol('served')

/**
 * The lookup runs as the route's last `preHandler` hook, callback style: after every `onRequest`
 * hook (rate limits, authentication), schema validation, and every `preValidation` and
 * `preHandler` hook (@fastify/auth's documented place), whatever the registration order, so a
 * hit is refused or answered exactly as the handler's response would be. A hit that replies
 * without calling `done` stops the lifecycle there, before the handler.
 */
export function makeLookup (route: LookupRoute): preHandlerHookHandler {
  const { engine, key, tags, stale } = route
  const refresher = route.refresher
  const header = engine.opts.cacheHeader
  const stats = engine.stats
  const prefix = engine.prefix
  const status = engine.opts.cacheStatus
  const hitStatus = status ? CACHE_STATUS.hit : undefined
  const staleStatus = status ? CACHE_STATUS.stale : undefined

  const hit = (request: FastifyRequest, reply: FastifyReply, entry: ResponseEntry): void => {
    request[kState] = HIT
    if (stats.enabled) { stats.hits++; route.counter.hits++ }
    serve(reply, entry, request.headers['if-none-match'], header, 'HIT', hitStatus)
  }
  const missed = (request: FastifyRequest, reply: FastifyReply, miss: Miss, done: DoneFn): void => {
    join(route, request, miss).then((entry) => {
      if (entry?.notStored === true) return passOn(request, reply, entry)
      if (entry !== null) return hit(request, reply, entry)
      request[kState] = miss
      if (miss.flight !== undefined) reply.raw.once('close', () => abandoned(request, reply, miss))
      if (stats.enabled) { stats.misses++; route.counter.misses++ }
      if (header) reply.header(header, 'MISS')
      done()
    }, done)
  }
  /**
   * The connection closed before the fill ran: a hijacked reply or a handler writing to
   * reply.raw (the response is complete, the fill will never run), or a client gone before its
   * response (the fill may still run and store it). Either way its waiters run the handler
   * themselves now, and other instances need not wait out its lease.
   */
  const abandoned = (request: FastifyRequest, reply: FastifyReply, miss: Miss): void => {
    if (request[kState] !== miss) return
    if (reply.raw.writableFinished) request[kState] = null
    miss.flight?.settle(null)
    const lease = miss.lease
    miss.lease = undefined
    if (lease !== undefined) engine.attempt('delete', lease, 0, () => route.store.delete([lease])).catch(() => {})
  }
  // The leader's error, not stored: this request waited for it instead of running the handler.
  const passOn = (request: FastifyRequest, reply: FastifyReply, entry: ResponseEntry): void => {
    request[kState] = HIT
    if (stats.enabled) { stats.misses++; route.counter.misses++ }
    if (header) reply.header(header, 'MISS')
    if (status) reply.header('cache-status', CACHE_STATUS.collapsed)
    reply.code(entry.status).headers(entry.headers).send(entry.body)
  }
  // Within staleWhileRevalidate: the expired entry now, and one refresh in the background.
  const serveStale = (request: FastifyRequest, reply: FastifyReply, k: string, entry: ResponseEntry): void => {
    request[kState] = HIT
    if (stats.enabled) { stats.stale++; route.counter.stale++ }
    serve(reply, entry, request.headers['if-none-match'], header, 'STALE', staleStatus)
    refresher?.refresh(request, k).catch(() => {})
  }
  /**
   * staleTimeout: the handler runs as a refresh; its answer goes to the client if it comes in
   * time and is not a 5xx, else the expired entry does. A late answer still lands in the store.
   */
  const timed = (request: FastifyRequest, reply: FastifyReply, k: string, entry: ResponseEntry, refresh: Refresher): void => {
    request[kState] = HIT
    let answered = false
    const answer = (res: Refreshed | undefined): void => {
      if (answered) return
      answered = true
      clearTimeout(timer)
      if (res === undefined || res.statusCode >= 500) {
        if (stats.enabled) { stats.stale++; route.counter.stale++ }
        return serve(reply, entry, request.headers['if-none-match'], header, 'STALE', staleStatus)
      }
      if (stats.enabled) { stats.misses++; route.counter.misses++ }
      for (const [name, value] of Object.entries(res.headers)) {
        if (value !== undefined && !HOP_HEADERS.has(name)) reply.header(name, value)
      }
      if (header) reply.header(header, 'MISS')
      reply.code(res.statusCode).send(res.body)
    }
    const timer = setTimeout(() => answer(undefined), stale.timeout)
    refresh.refresh(request, k).then(answer, () => answer(undefined))
  }
  /**
   * A found entry: served fresh, or stale within staleWhileRevalidate (SERVED). Within
   * staleIfError it is returned, as the miss's fallback; past every window, undefined.
   */
  const found = (request: FastifyRequest, reply: FastifyReply, k: string, entry: ResponseEntry): typeof SERVED | ResponseEntry | undefined => {
    const freshUntil = entry.freshUntil
    // Routes without a stale window store no freshUntil: a hit costs no clock read.
    let now = 0
    if (freshUntil === undefined || (now = Date.now()) < freshUntil) {
      hit(request, reply, entry)
      return SERVED
    }
    const windows = entry.windows
    if (now < freshUntil + (windows === undefined ? stale.whileRevalidate : windows[0])) {
      serveStale(request, reply, k, entry)
      return SERVED
    }
    if (now >= freshUntil + (windows === undefined ? stale.ifError : windows[1])) return undefined
    if (stale.timeout === undefined || refresher === undefined) return entry
    timed(request, reply, k, entry, refresher)
    return SERVED
  }
  const uncached = (request: FastifyRequest, reply: FastifyReply, done: DoneFn, why: 'store-unavailable' | 'key'): void => {
    bypass(engine, request, reply, route.counter, why)
    done()
  }
  // The memory store answers synchronously: a hit is served in the same tick, no promise.
  const store = route.store
  const syncStore = store.getSync !== undefined && route.vary.length === 0 ? store as ManagedStore & { getSync: (key: string) => Buffer | undefined } : undefined

  return function cacheLookup (request, reply, done) {
    let k: string
    let t: readonly string[]
    try {
      k = prefix + key(request)
      t = tags === undefined ? NO_TAGS : tags(request)
    } catch (err) {
      if (!(err instanceof KeyError)) return done(err as Error)
      request.log.warn({ reason: err.message }, `Cache key could not be built: ${err.message}; request runs uncached`)
      return uncached(request, reply, done, 'key')
    }
    if (syncStore !== undefined) {
      const seq = engine.invalidations
      const entry = engine.readNow(syncStore, k)
      // A refresh runs the handler whatever is stored (the refresher sent it for that).
      const seen = entry?.kind === 'response' && sameVariant(entry, request) && refresher?.isRefresh(request) !== true ? found(request, reply, k, entry) : undefined
      if (seen === SERVED) return
      return missed(request, reply, { key: k, seq, tags: t, token: null, stale: seen }, done)
    }
    find(route, request, k, t).then((result) => {
      if (result === UNAVAILABLE) return uncached(request, reply, done, 'store-unavailable')
      const miss = result.miss
      if (result.entry !== undefined && refresher?.isRefresh(request) !== true) {
        const seen = found(request, reply, k, result.entry)
        if (seen === SERVED) return
        miss.stale = seen
      }
      if (!needsPrepare(engine, miss)) return missed(request, reply, miss, done)
      // The key's guard must exist before the handler reads anything (see Store#prepare).
      prepareMiss(route, miss).then((ok) => {
        if (ok) missed(request, reply, miss, done)
        else uncached(request, reply, done, 'store-unavailable')
      }, done)
    }, done)
  }
}
