import { randomUUID } from 'node:crypto'
import type { FastifyRequest, onSendHookHandler } from 'fastify'
import { strongEtag, type ResponseEntry } from './codec.js'
import { UNAVAILABLE, type Engine, type ManagedStore } from './engine.js'
import { BYPASS, headerValue, HIT, kState, type Miss } from './lookup.js'

/** Headers safe to replay to another client; everything else a handler sets is not stored. */
const STORED_HEADERS = ['content-type', 'content-encoding', 'content-language', 'content-disposition', 'cache-control', 'last-modified', 'link', 'location', 'vary']

/**
 * The GET route's `onSend` hook: stores a missed response when it may be shared, and hands it to
 * the requests waiting on this fill. Callback style: hits (which Fastify also sends through
 * onSend) pass straight through without a promise.
 */
export function makeFill (engine: Engine, store: ManagedStore, statusCodes: Set<number>, expiration: number): onSendHookHandler {
  return function cacheFill (request, reply, payload, done) {
    const miss = request[kState]
    if (miss === null || miss === HIT || miss === BYPASS) return done(null, payload)
    request[kState] = null
    const headers = reply.getHeaders()
    if (request.method !== 'GET' || !statusCodes.has(reply.statusCode) || !cacheablePayload(payload) || !cacheableHeaders(headers)) {
      miss.flight?.settle(null)
      if (miss.lease === undefined) return done(null, payload)
      return release(engine, store, miss.lease).then(() => done(null, payload))
    }
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
    const entry: ResponseEntry = { kind: 'response', status: reply.statusCode, headers: stored, storedAt: Date.now(), etag, vary: responseVary(request, stored.vary), body }
    miss.flight?.settle(entry)
    persist(engine, store, miss, entry, expiration)
      .then(() => miss.lease === undefined ? undefined : release(engine, store, miss.lease))
      .then(() => done(null, payload), done)
  }
}

/** Not an invalidation: the lease only tells other instances that a fill is under way. */
async function release (engine: Engine, store: ManagedStore, lease: string): Promise<void> {
  await store.delete([lease]).catch((err) => engine.failed(err, 'delete', lease))
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

/** Whether an invalidation since the lookup covered this response's key (or its variant root). */
function overtaken (engine: Engine, miss: Miss): boolean {
  return engine.changedSince(miss.key, miss.seq) || (miss.root !== undefined && engine.changedSince(miss.root, miss.seq))
}

async function persist (engine: Engine, store: ManagedStore, miss: Miss, entry: ResponseEntry, ttl: number): Promise<void> {
  if (overtaken(engine, miss)) return
  if (miss.root !== undefined && miss.token === undefined) {
    const token = await variantToken(engine, store, miss.root, ttl)
    if (token === undefined) return
    miss.key = `${miss.root}|${token}|${miss.variant}`
    if (overtaken(engine, miss)) return
  }
  const { kind: _kind, ...fields } = entry
  await engine.write(store, miss.key, engine.codec.encodeResponse(fields, store.kind !== 'memory'), ttl)
}

/** The token of the key's variant set, creating the set when there is none. */
async function variantToken (engine: Engine, store: ManagedStore, root: string, ttl: number): Promise<string | undefined> {
  const token = randomUUID()
  const marker = engine.codec.encodeVariants(token)
  let created: boolean
  try {
    created = await store.add(root, marker, ttl)
  } catch (err) {
    engine.failed(err, 'add', root)
    return undefined
  }
  if (created) return token
  const existing = await engine.read(store, root)
  if (existing === UNAVAILABLE) return undefined
  if (existing?.kind === 'variants') return existing.token
  // Something else sits at the root (an entry of a route without `vary`): replace it.
  return await engine.write(store, root, marker, ttl) ? token : undefined
}
