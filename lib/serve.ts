import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ResponseEntry } from './codec.js'
import type { Engine } from './engine.js'
import { BYPASS, kState } from './request-state.js'

const NOT_MODIFIED_HEADERS = ['cache-control', 'vary', 'last-modified']

/** Replies from a stored entry: the handler does not run. */
export function serve (reply: FastifyReply, entry: ResponseEntry, ifNoneMatch: string | undefined, header: string | false, outcome = 'HIT'): void {
  const age = Math.max(0, Math.floor((Date.now() - entry.storedAt) / 1000))
  if (header) reply.header(header, outcome)
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

/** The request runs uncached: the store failed or the request could not be keyed. */
export function bypass (engine: Engine, request: FastifyRequest, reply: FastifyReply): void {
  request[kState] = BYPASS
  if (engine.stats.enabled) engine.stats.bypasses++
  if (engine.opts.cacheHeader) reply.header(engine.opts.cacheHeader, 'BYPASS')
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
