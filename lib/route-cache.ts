import { createHash, randomUUID } from 'node:crypto'
import type { FastifyReply, FastifyRequest, onRequestHookHandler, onSendHookHandler, RouteOptions } from 'fastify'
import { strongEtag, type ResponseEntry } from './codec.js'
import { Engine, UNAVAILABLE, type ManagedStore } from './engine.js'
import { CacheConfigurationError, InvalidRequestError, PatternMatchingNotSupportedError } from './errors.js'
import { escapeGlob } from './glob.js'
import { compileKey, compileResourceId, compileTemplate, encodeSegment, KeyError, lookup, type IdType, type KeySource } from './keys.js'
import { RouteCacheConfigSchema, type RouteCacheConfig } from './schemas.js'
import type { RouteCounter } from './stats.js'
import { validate } from './validate.js'

/** Request-scoped state, on a symbol so the request object's shape stays stable. */
export const kState = Symbol('fastify-server-cache.state')
const HIT = 1
const BYPASS = 2

interface Miss {
  /** Full key the response is stored under. */
  key: string
  /** engine.invalidations when the lookup ran. */
  seq: number
  /** For routes with `vary`: the key's variant-set root, and its token when one was found. */
  root?: string
  token?: string
  variant?: string
}
export type RequestState = Miss | typeof HIT | typeof BYPASS | null

const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
/** Headers safe to replay to another client; everything else a handler sets is not stored. */
const STORED_HEADERS = ['content-type', 'content-encoding', 'content-language', 'content-disposition', 'cache-control', 'last-modified', 'link', 'location', 'vary']
const NOT_MODIFIED_HEADERS = ['cache-control', 'vary', 'last-modified']

/**
 * The `onRoute` hook: validates a route's `config.cache` and compiles everything a request
 * needs (key builder, store, hooks) once. Routes without `config.cache` are left untouched.
 */
export function cacheRoutes (engine: Engine): (route: RouteOptions) => void {
  return function onRoute (route) {
    const raw = (route.config as { cache?: unknown } | undefined)?.cache
    if (raw === undefined) return
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).map((m) => m.toUpperCase())
    const where = `config.cache of ${methods.join(',')} ${route.url}`
    validate(RouteCacheConfigSchema, raw, where)
    const cfg = raw as RouteCacheConfig
    const reads = methods.includes('GET') || methods.includes('HEAD')
    if (reads && (cfg.toInvalidateExtra !== undefined || cfg.patternToInvalidateExtra !== undefined)) {
      throw new InvalidRequestError(`${where}: toInvalidateExtra and patternToInvalidateExtra are for mutations (POST, PUT, PATCH, DELETE), not GET routes`)
    }
    const expiration = cfg.expiration ?? engine.opts.defaultExpiration
    if (expiration > engine.opts.maxExpiration) {
      throw new CacheConfigurationError(`${where}: expiration: ${expiration} is above maxExpiration (${engine.opts.maxExpiration})`)
    }
    if (!engine.opts.backends.has(cfg.backendName ?? '')) {
      throw new CacheConfigurationError(`${where}: backendName: '${cfg.backendName}' is not one of the configured backends`)
    }
    const types: IdType[] = cfg.resourceIdType === undefined ? ['integer'] : Array.isArray(cfg.resourceIdType) ? cfg.resourceIdType : [cfg.resourceIdType]
    const key = compileKey(cfg.keyPrefix, compileResourceId(cfg.resourceIdName, types, route.url), `${where}: keyPrefix`)
    const extras = compileExtras(cfg, where)
    const patterns = compilePatterns(cfg, where)
    // Disabled: a route's mistakes still fail at boot, not on the day caching is switched on.
    if (!engine.opts.enabled) return
    const store = engine.store(cfg.backendName)
    const label = typeof cfg.keyPrefix === 'string' ? cfg.keyPrefix : route.url
    const route$ = { engine, store, key, where }

    if (reads) {
      const lookupHook = makeLookup(route$, engine.stats.route(label), cfg.vary?.map((h) => h.toLowerCase()) ?? [])
      route.onRequest = appendHook(route.onRequest, lookupHook)
      if (methods.includes('GET')) route.onSend = appendHook(route.onSend, makeStore(route$, new Set(cfg.statusCodes ?? [200]), expiration))
    }
    if (methods.some((m) => MUTATIONS.has(m))) {
      route.onSend = appendHook(route.onSend, makeInvalidate(route$, extras, patterns))
    }
  }
}

interface Route {
  engine: Engine
  store: ManagedStore
  key: (request: FastifyRequest, source: KeySource) => string
  where: string
}

function appendHook<T> (hooks: T | T[] | undefined, hook: T): T[] {
  return hooks === undefined ? [hook] : Array.isArray(hooks) ? [...hooks, hook] : [hooks, hook]
}

function makeLookup ({ engine, store, key }: Route, counter: RouteCounter, vary: string[]): onRequestHookHandler {
  const header = engine.opts.cacheHeader
  const stats = engine.stats
  const prefix = engine.prefix
  const bypass = (request: FastifyRequest, reply: FastifyReply): void => {
    request[kState] = BYPASS
    if (stats.enabled) stats.bypasses++
    if (header) reply.header(header, 'BYPASS')
  }

  return async function cacheLookup (request, reply) {
    let k: string
    try {
      k = prefix + key(request, request)
    } catch (err) {
      if (!(err instanceof KeyError)) throw err
      request.log.warn({ reason: err.message }, `Cache key could not be built: ${err.message}; request runs uncached`)
      return bypass(request, reply)
    }
    const seq = engine.invalidations
    let entry = await engine.read(store, k)
    if (entry === UNAVAILABLE) return bypass(request, reply)
    let miss: Miss = { key: k, seq }
    if (vary.length > 0) {
      const variant = variantSuffix(request, vary)
      miss = { key: k, seq, root: k, variant }
      if (entry?.kind === 'variants') {
        miss.token = entry.token
        miss.key = `${k}|${entry.token}|${variant}`
        entry = await engine.read(store, miss.key)
        if (entry === UNAVAILABLE) return bypass(request, reply)
      } else {
        entry = undefined
      }
    }
    if (entry?.kind === 'response' && sameVariant(entry, request)) {
      request[kState] = HIT
      if (stats.enabled) { stats.hits++; counter.hits++ }
      return serveHit(reply, entry, request.headers['if-none-match'], header)
    }
    request[kState] = miss
    if (stats.enabled) { stats.misses++; counter.misses++ }
    if (header) reply.header(header, 'MISS')
  }
}

function serveHit (reply: FastifyReply, entry: ResponseEntry, ifNoneMatch: string | undefined, header: string | false): FastifyReply {
  const age = Math.max(0, Math.floor((Date.now() - entry.storedAt) / 1000))
  if (header) reply.header(header, 'HIT')
  reply.header('age', age)
  reply.header('etag', entry.etag)
  if (ifNoneMatch !== undefined && etagMatches(ifNoneMatch, entry.etag)) {
    for (const name of NOT_MODIFIED_HEADERS) {
      if (entry.headers[name] !== undefined) reply.header(name, entry.headers[name])
    }
    return reply.code(304).send()
  }
  return reply.code(entry.status).headers(entry.headers).send(entry.body)
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
function variantSuffix (request: FastifyRequest, vary: string[]): string {
  const hash = createHash('sha256')
  for (const name of vary) hash.update(headerValue(request, name) + '\n')
  return hash.digest('base64url').slice(0, 27)
}

function headerValue (request: FastifyRequest, name: string): string {
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

function makeStore ({ engine, store }: Route, statusCodes: Set<number>, expiration: number): onSendHookHandler {
  return function cacheStore (request, reply, payload, done) {
    const state = request[kState]
    if (state === null || state === HIT || state === BYPASS) return done(null, payload)
    request[kState] = null
    if (request.method !== 'GET' || !statusCodes.has(reply.statusCode) || !cacheablePayload(payload)) return done(null, payload)
    const headers = reply.getHeaders()
    if (!cacheableHeaders(headers)) return done(null, payload)

    const body = payload == null ? Buffer.alloc(0) : typeof payload === 'string' ? Buffer.from(payload) : payload as Buffer
    const stored: Record<string, string> = {}
    for (const name of STORED_HEADERS) {
      const v = headers[name]
      if (v !== undefined) stored[name] = Array.isArray(v) ? v.join(', ') : String(v)
    }
    let etag = headers.etag as string | undefined
    if (etag === undefined) {
      etag = strongEtag(body)
      reply.header('etag', etag)
    }
    const entry = { status: reply.statusCode, headers: stored, storedAt: Date.now(), etag, vary: responseVary(request, stored.vary), body }
    persist(engine, store, state, engine.codec.encodeResponse(entry), expiration).then(() => done(null, payload), done)
  }
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

function responseVary (request: FastifyRequest, vary: string | undefined): Record<string, string> | null {
  if (vary === undefined) return null
  const out: Record<string, string> = {}
  for (const name of vary.split(',')) {
    const n = name.trim().toLowerCase()
    if (n) out[n] = headerValue(request, n)
  }
  return out
}

async function persist (engine: Engine, store: ManagedStore, miss: Miss, value: Buffer, ttl: number): Promise<void> {
  // A mutation ran while the handler produced this response: it may predate that write.
  if (engine.invalidations !== miss.seq) return
  if (miss.root !== undefined && miss.token === undefined) {
    const token = randomUUID()
    const created = await tryAdd(engine, store, miss.root, engine.codec.encodeVariants(token), ttl)
    if (created === undefined) return
    if (created) {
      miss.token = token
    } else {
      const root = await engine.read(store, miss.root)
      if (root === UNAVAILABLE) return
      if (root?.kind === 'variants') {
        miss.token = root.token
      } else {
        // Something else sits at the root (an entry of a route without `vary`): replace it.
        if (!await engine.write(store, miss.root, engine.codec.encodeVariants(token), ttl)) return
        miss.token = token
      }
    }
    miss.key = `${miss.root}|${miss.token}|${miss.variant}`
    if (engine.invalidations !== miss.seq) return
  }
  await engine.write(store, miss.key, value, ttl)
}

async function tryAdd (engine: Engine, store: ManagedStore, key: string, value: Buffer, ttl: number): Promise<boolean | undefined> {
  try {
    return await store.add(key, value, ttl)
  } catch (err) {
    engine.failed(err, 'add', key)
    return undefined
  }
}

type KeysOf = (request: FastifyRequest) => string[]

/** `toInvalidateExtra`: `{ prefixTemplate: idTemplate | fieldName | literal }`. */
function compileExtras (cfg: RouteCacheConfig, where: string): KeysOf[] {
  return Object.entries(cfg.toInvalidateExtra ?? {}).map(([prefixTemplate, id]) => {
    const prefix = compileTemplate(prefixTemplate, `${where}: toInvalidateExtra`).render
    const idTemplate = id.includes('{') ? compileTemplate(id, `${where}: toInvalidateExtra.${prefixTemplate}`).render : null
    return (request: FastifyRequest) => {
      const idValue = idTemplate !== null ? idTemplate(request) : encodeSegment(lookup(request, id) ?? id)
      return [prefix(request) + ':' + idValue]
    }
  })
}

/** Placeholder values are escaped so that a user's `*` or `[` matches only itself. */
function compilePatterns (cfg: RouteCacheConfig, where: string): KeysOf[] {
  const escape = (s: string): string => escapeGlob(encodeSegment(s))
  return (cfg.patternToInvalidateExtra ?? []).map((p) => {
    const { render } = compileTemplate(p, `${where}: patternToInvalidateExtra`)
    return (request: FastifyRequest) => [render(request, escape)]
  })
}

function makeInvalidate ({ engine, store, key }: Route, extras: KeysOf[], patterns: KeysOf[]): onSendHookHandler {
  const build = (request: FastifyRequest, parts: KeysOf[], into: string[]): void => {
    for (const part of parts) {
      try {
        into.push(...part(request))
      } catch (err) {
        if (!(err instanceof KeyError)) throw err
        request.log.warn({ reason: err.message }, `Cache invalidation key could not be built: ${err.message}; that key is skipped`)
      }
    }
  }
  const own: KeysOf = (request) => [key(request, request)]

  return async function cacheInvalidate (request, reply, payload) {
    if (!MUTATIONS.has(request.method) || reply.statusCode < 200 || reply.statusCode >= 300) return payload
    const keys: string[] = []
    const globs: string[] = []
    build(request, [own, ...extras], keys)
    build(request, patterns, globs)
    await Promise.all([
      engine.remove(store, keys.map((k) => engine.prefix + k)),
      ...globs.map((g) => engine.removePattern(store, engine.escapedPrefix + g).catch((err) => {
        if (err instanceof PatternMatchingNotSupportedError) {
          request.log.error({ err, pattern: g }, `Cache pattern invalidation skipped: ${err.message}`)
        } else {
          engine.failed(err, 'deletePattern', g)
        }
      })),
    ])
    return payload
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    [kState]: RequestState
  }
}
