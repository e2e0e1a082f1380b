import type { FastifyReply, FastifyRequest, onSendHookHandler } from 'fastify'
import { responseLifetime, type Lifetime } from './cache-control.js'
import { strongEtag, type ResponseEntry } from './codec.js'
import type { Engine, ManagedStore } from './engine.js'
import type { Token } from './stores/store.js'
import { BYPASS, HIT, kState, type Miss } from './request-state.js'
import { CACHE_STATUS, entryHeaders } from './serve.js'
import type { RouteCounter } from './stats.js'
import { responseVary, variantSet } from './variants.js'

/** Headers safe to replay to another client; everything else a handler sets is not stored. */
const STORED_HEADERS = ['content-type', 'content-encoding', 'content-language', 'content-disposition', 'cache-control', 'last-modified', 'link', 'location', 'vary']

/** The GET route's first `onSend` hook: keeps a miss's payload before any encoder changes it. */
export function capturePayload (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: Error | null, payload?: unknown) => void): void {
  const miss = request[kState]
  if (miss !== null && miss !== HIT && miss !== BYPASS) {
    miss.payload = payload
    miss.encoded = reply.hasHeader('content-encoding')
  }
  done(null, payload)
}

/**
 * The GET route's last `onSend` hook: stores a missed response when it may be shared, and hands it to
 * the requests waiting on this fill. Callback style: hits (which Fastify also sends through
 * onSend) pass straight through without a promise.
 */
export function makeFill (engine: Engine, store: ManagedStore, statusCodes: Set<number>, route: Lifetime, counter: RouteCounter): onSendHookHandler {
  const windowed = route.whileRevalidate > 0 || route.ifError > 0
  const status = engine.opts.cacheStatus
  return function cacheFill (request, reply, payload, done) {
    const miss = request[kState]
    if (miss === null || miss === HIT || miss === BYPASS) return done(null, payload)
    request[kState] = null
    // staleIfError: the expired entry answers instead of the handler's 5xx (a thrown error included).
    if (miss.stale !== undefined && reply.statusCode >= 500) {
      miss.flight?.settle(null)
      const stale = miss.stale
      if (engine.stats.enabled) { engine.stats.stale++; counter.stale++ }
      reply.code(stale.status)
      for (const name of Object.keys(reply.getHeaders())) if (name !== engine.opts.cacheHeader) reply.removeHeader(name)
      reply.headers(stale.headers)
      entryHeaders(reply, stale, engine.opts.cacheHeader, 'STALE', status ? CACHE_STATUS.stale : undefined)
      const served = stale.body
      if (miss.lease === undefined) return done(null, served)
      return release(engine, store, miss.lease).then(() => done(null, served))
    }
    let headers: Record<string, unknown> = reply.getHeaders()
    // An encoder after the capture (compression): store what the handler made, unencoded.
    const made = 'payload' in miss ? miss.payload : payload
    if (made !== payload && miss.encoded === false && headers['content-encoding'] !== undefined) headers = unencoded(headers)
    const shareable = request.method === 'GET' && cacheablePayload(made) && cacheableHeaders(headers)
    const life = responseLifetime(headers['cache-control'], route)
    if (!shareable || !statusCodes.has(reply.statusCode) || life.expiration === 0) {
      // An error (or a response with no lifetime) is handed to the requests waiting on this fill,
      // not stored: a failing origin runs once for all of them instead of once each. Anything
      // else not stored may be personal or one-off (set-cookie, private, a stream): each waiter
      // then runs the handler.
      const shared = shareable && (reply.statusCode >= 400 || life.expiration === 0) && miss.flight !== undefined
      if (status) reply.header('cache-status', CACHE_STATUS.miss(notStoredBecause(request, reply, made, headers, statusCodes)))
      miss.flight?.settle(shared ? { ...responseEntry(request, reply, headers, made, ''), notStored: true } : null)
      if (miss.lease === undefined) return done(null, payload)
      return release(engine, store, miss.lease).then(() => done(null, payload))
    }
    let etag = headers.etag as string | undefined
    const entry = responseEntry(request, reply, headers, made, etag ?? '')
    if (entry.body.length > engine.opts.maxEntryBytes) return tooLarge(engine, store, request, reply, miss, entry, payload, done)
    // Only routes with a stale window mark when an entry turns stale: a hit elsewhere pays nothing.
    if (windowed) {
      entry.freshUntil = entry.storedAt + life.expiration * 1000
      if (life !== route) entry.windows = [life.whileRevalidate * 1000, life.ifError * 1000]
    }
    if (status) reply.header('cache-status', miss.token === undefined || overtaken(engine, miss) ? CACHE_STATUS.miss('invalidated') : CACHE_STATUS.stored)
    const ownEtag = etag === undefined
    if (ownEtag) {
      etag = entry.etag = strongEtag(entry.body)
      reply.header('etag', etag)
    }
    miss.flight?.settle(entry)
    persist(engine, store, miss, entry, life.expiration + Math.max(life.whileRevalidate, life.ifError), ownEtag)
      .then(() => miss.lease === undefined ? undefined : release(engine, store, miss.lease))
      .then(() => done(null, payload), done)
  }
}

/** Served, not stored; its waiters get it too (one handler call), as with an error response. */
function tooLarge (engine: Engine, store: ManagedStore, request: FastifyRequest, reply: FastifyReply, miss: Miss, entry: ResponseEntry, payload: unknown, done: (err: Error | null, payload?: unknown) => void): void {
  request.log.debug({ key: miss.key, bytes: entry.body.length, maxEntryBytes: engine.opts.maxEntryBytes }, 'Response not cached: its body is larger than maxEntryBytes')
  if (engine.opts.cacheStatus) reply.header('cache-status', CACHE_STATUS.miss('too-large'))
  miss.flight?.settle({ ...entry, notStored: true })
  if (miss.lease === undefined) return done(null, payload)
  release(engine, store, miss.lease).then(() => done(null, payload), done)
}

/** The headers as they were before an encoder: no content-encoding, no vary on accept-encoding. */
function unencoded (headers: Record<string, unknown>): Record<string, unknown> {
  const { 'content-encoding': _encoding, vary, ...rest } = headers
  if (vary === undefined) return rest
  const kept = String(vary).split(',').map((v) => v.trim()).filter((v) => v !== '' && v.toLowerCase() !== 'accept-encoding')
  return kept.length === 0 ? rest : { ...rest, vary: kept.join(', ') }
}

function responseEntry (request: FastifyRequest, reply: FastifyReply, headers: Record<string, unknown>, payload: unknown, etag: string): ResponseEntry {
  const body = payload == null ? Buffer.alloc(0) : typeof payload === 'string' ? Buffer.from(payload) : payload as Buffer
  const stored: Record<string, string> = {}
  for (const name of STORED_HEADERS) {
    const v = headers[name]
    if (v !== undefined) stored[name] = Array.isArray(v) ? v.join(', ') : String(v)
  }
  return { kind: 'response', status: reply.statusCode, headers: stored, storedAt: Date.now(), etag, vary: responseVary(request, stored.vary), body }
}

/** Not an invalidation: the lease only tells other instances that a fill is under way. */
async function release (engine: Engine, store: ManagedStore, lease: string): Promise<void> {
  await engine.attempt('delete', lease, 0, () => store.delete([lease]))
}

/** Why a missed response is not stored, as a Cache-Status detail token. */
function notStoredBecause (request: FastifyRequest, reply: FastifyReply, payload: unknown, headers: Record<string, unknown>, statusCodes: Set<number>): string {
  if (request.method !== 'GET') return 'head'
  if (!cacheablePayload(payload)) return 'stream'
  if (!cacheableHeaders(headers)) return 'private'
  if (!statusCodes.has(reply.statusCode)) return 'status'
  return 'no-lifetime'
}

function cacheablePayload (payload: unknown): boolean {
  return payload == null || typeof payload === 'string' || Buffer.isBuffer(payload)
}

function cacheableHeaders (headers: Record<string, unknown>): boolean {
  if (headers['set-cookie'] !== undefined) return false
  const cc = headers['cache-control']
  if (cc !== undefined && /(?:^|[\s,])(?:no-store|private)(?:$|[\s,=])/i.test(String(cc))) return false
  const vary = headers.vary
  return vary === undefined || !String(vary).split(',').some((v) => v.trim() === '*')
}

/** Whether an invalidation since the lookup covered this response's key (or its variant root). */
function overtaken (engine: Engine, miss: Miss): boolean {
  return engine.changedSince(miss.key, miss.seq, miss.tags) || (miss.root !== undefined && engine.changedSince(miss.root, miss.seq))
}

/** `ownEtag`: the entry's etag is strongEtag(body), not the handler's. */
async function persist (engine: Engine, store: ManagedStore, miss: Miss, entry: ResponseEntry, ttl: number, ownEtag: boolean): Promise<void> {
  // Overtaken before the handler ran (on any instance), or since, in this process.
  if (miss.token === undefined || overtaken(engine, miss)) return
  let token: Token | null | undefined = miss.token
  if (miss.root !== undefined && miss.variantSet === undefined) {
    const set = await variantSet(engine, store, miss.root, token, ttl, miss.tags)
    if (set === undefined) return
    miss.variantSet = set
    miss.key = `${miss.root}|${set}|${miss.variant}`
    if (overtaken(engine, miss)) return
    // The token guarded the set's marker; the variant key under a new set is new to everyone.
    token = token === null ? null : undefined
  }
  const { kind: _kind, ...fields } = entry
  await engine.write(store, miss.key, engine.codec.encodeResponse(fields, !store.local, ownEtag), ttl, token, miss.tags)
}
