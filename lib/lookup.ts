import type { FastifyReply, FastifyRequest, preParsingHookHandler } from 'fastify'
import type { ResponseEntry } from './codec.js'
import { join } from './coalesce.js'
import { UNAVAILABLE, type ManagedStore } from './engine.js'
import { find, needsPrepare, prepareMiss, type LookupRoute } from './find.js'
import { KeyError } from './keys.js'
import { HIT, kState, type Miss } from './request-state.js'
import { bypass, serve } from './serve.js'
import { sameVariant } from './variants.js'

export type { LookupRoute } from './find.js'

type DoneFn = (err?: Error | null, payload?: any) => void
const NO_TAGS: readonly string[] = []

/**
 * The lookup runs as a callback-style `preParsing` hook: after every `onRequest` hook (rate
 * limits, authentication) whatever the registration order, and a hit that replies without
 * calling `done` stops the lifecycle there even when an async onSend hook is still running.
 */
export function makeLookup (route: LookupRoute): preParsingHookHandler {
  const { engine, key, tags } = route
  const header = engine.opts.cacheHeader
  const stats = engine.stats
  const prefix = engine.prefix

  const hit = (request: FastifyRequest, reply: FastifyReply, entry: ResponseEntry): void => {
    request[kState] = HIT
    if (stats.enabled) { stats.hits++; route.counter.hits++ }
    serve(reply, entry, request.headers['if-none-match'], header)
  }
  const missed = (request: FastifyRequest, reply: FastifyReply, miss: Miss, payload: unknown, done: DoneFn): void => {
    join(route, request, miss).then((entry) => {
      if (entry?.notStored === true) return passOn(request, reply, entry)
      if (entry !== null) return hit(request, reply, entry)
      request[kState] = miss
      if (stats.enabled) { stats.misses++; route.counter.misses++ }
      if (header) reply.header(header, 'MISS')
      done(null, payload)
    }, done)
  }
  // The leader's error, not stored: this request waited for it instead of running the handler.
  const passOn = (request: FastifyRequest, reply: FastifyReply, entry: ResponseEntry): void => {
    request[kState] = HIT
    if (stats.enabled) { stats.misses++; route.counter.misses++ }
    if (header) reply.header(header, 'MISS')
    reply.code(entry.status).headers(entry.headers).send(entry.body)
  }
  const uncached = (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: DoneFn): void => {
    bypass(engine, request, reply)
    done(null, payload)
  }
  // The memory store answers synchronously: a hit is served in the same tick, no promise.
  const store = route.store
  const syncStore = store.getSync !== undefined && route.vary.length === 0 ? store as ManagedStore & { getSync: (key: string) => Buffer | undefined } : undefined

  return function cacheLookup (request, reply, payload, done) {
    let k: string
    let t: readonly string[]
    try {
      k = prefix + key(request)
      t = tags === undefined ? NO_TAGS : tags(request)
    } catch (err) {
      if (!(err instanceof KeyError)) return done(err as Error)
      request.log.warn({ reason: err.message }, `Cache key could not be built: ${err.message}; request runs uncached`)
      return uncached(request, reply, payload, done)
    }
    if (syncStore !== undefined) {
      const seq = engine.invalidations
      const entry = engine.readNow(syncStore, k)
      if (entry?.kind === 'response' && sameVariant(entry, request)) return hit(request, reply, entry)
      return missed(request, reply, { key: k, seq, tags: t, token: null }, payload, done)
    }
    find(route, request, k, t).then((found) => {
      if (found === UNAVAILABLE) return uncached(request, reply, payload, done)
      if (found.entry !== undefined) return hit(request, reply, found.entry)
      const miss = found.miss
      if (!needsPrepare(engine, miss)) return missed(request, reply, miss, payload, done)
      // The key's guard must exist before the handler reads anything (see Store#prepare).
      prepareMiss(route, miss).then((ok) => {
        if (ok) missed(request, reply, miss, payload, done)
        else uncached(request, reply, payload, done)
      }, done)
    }, done)
  }
}
