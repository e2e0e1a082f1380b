import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ResponseEntry } from './codec.js'
import type { Engine } from './engine.js'
import { BYPASS, kState } from './request-state.js'
import type { RouteCounter } from './stats.js'

const NOT_MODIFIED_HEADERS = ['cache-control', 'vary', 'last-modified']

/** RFC 9211 Cache-Status values (the cache's name, then what it did). */
export const CACHE_STATUS = {
  hit: 'fastify-server-cache; hit',
  stale: 'fastify-server-cache; fwd=stale',
  stored: 'fastify-server-cache; fwd=miss; stored',
  /** Not stored, with why (an RFC 8941 token). */
  miss: (detail: string) => `fastify-server-cache; fwd=miss; detail=${detail}`,
  collapsed: 'fastify-server-cache; fwd=miss; collapsed; detail=not-storable',
  bypass: (detail: string) => `fastify-server-cache; fwd=bypass; detail=${detail}`,
} as const

/** The headers every answer from a stored entry carries: the outcome, its age and its ETag. */
export function entryHeaders (reply: FastifyReply, entry: ResponseEntry, header: string | false, outcome: string, cacheStatus: string | undefined): void {
  if (header) reply.header(header, outcome)
  if (cacheStatus !== undefined) reply.header('cache-status', cacheStatus)
  reply.header('age', Math.max(0, Math.floor((Date.now() - entry.storedAt) / 1000)))
  reply.header('etag', entry.etag)
}

/** Replies from a stored entry: the handler does not run. */
export function serve (reply: FastifyReply, entry: ResponseEntry, ifNoneMatch: string | undefined, header: string | false, outcome = 'HIT', cacheStatus?: string): void {
  entryHeaders(reply, entry, header, outcome, cacheStatus)
  if (ifNoneMatch !== undefined && etagMatches(ifNoneMatch, entry.etag)) {
    for (const name of NOT_MODIFIED_HEADERS) {
      if (entry.headers[name] !== undefined) reply.header(name, entry.headers[name])
    }
    reply.code(304).send()
    return
  }
  reply.code(entry.status).headers(entry.headers).send(entry.body)
}

/** The request runs uncached: the store failed (`store-unavailable`) or the request could not be keyed (`key`). */
export function bypass (engine: Engine, request: FastifyRequest, reply: FastifyReply, counter: RouteCounter, detail: 'store-unavailable' | 'key'): void {
  request[kState] = BYPASS
  if (engine.stats.enabled) { engine.stats.bypasses++; counter.bypasses++ }
  if (engine.opts.cacheHeader) reply.header(engine.opts.cacheHeader, 'BYPASS')
  if (engine.opts.cacheStatus) reply.header('cache-status', CACHE_STATUS.bypass(detail))
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
