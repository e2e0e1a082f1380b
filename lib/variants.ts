import { createHash, randomUUID } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { ResponseEntry } from './codec.js'
import { UNAVAILABLE, type Engine, type ManagedStore } from './engine.js'
import type { Token } from './stores/store.js'

/*
 * Route `vary`: the responses of one key live under `root|set|digest`, where `set` is a random
 * token kept in a marker at the root. Deleting the root (any invalidation of the key) orphans
 * every variant at once, on every store, Memcached included; the next fill starts a new set.
 */

/** Secrets such as `authorization` never appear in keys: the variant is a digest of the values. */
export function variantDigest (request: FastifyRequest, vary: string[]): string {
  const hash = createHash('sha256')
  for (const name of vary) hash.update(headerValue(request, name) + '\n')
  return hash.digest('base64url').slice(0, 27)
}

export function headerValue (request: FastifyRequest, name: string): string {
  const v = request.headers[name]
  return v === undefined ? '' : Array.isArray(v) ? v.join(', ') : v
}

/** The response's own `Vary`: served only to requests with the same values as the stored one. */
export function sameVariant (entry: ResponseEntry, request: FastifyRequest): boolean {
  if (entry.vary === null) return true
  for (const name in entry.vary) {
    if (headerValue(request, name) !== entry.vary[name]) return false
  }
  return true
}

/** The response's `Vary` header as the request's values of the headers it names. */
export function responseVary (request: FastifyRequest, vary: string | undefined): Record<string, string> | null {
  if (vary === undefined) return null
  const out: Record<string, string> = {}
  for (const name of vary.split(',')) {
    const n = name.trim().toLowerCase()
    if (n) out[n] = headerValue(request, n)
  }
  return out
}

/**
 * The key's variant set, creating it when there is none. The marker is written with the root's
 * token from the lookup: if the root was invalidated since, on any instance, the marker is never
 * served and this set stays unreachable. A set already there is joined only when it was written
 * under that same token.
 */
export async function variantSet (engine: Engine, store: ManagedStore, root: string, rootToken: Token | null, ttl: number, tags: readonly string[]): Promise<string | undefined> {
  const found = await engine.read(store, root, tags)
  if (found === UNAVAILABLE) return undefined
  if (found.entry?.kind === 'variants' && (rootToken === null || found.token?.id === rootToken.id)) return found.entry.token
  const set = randomUUID()
  return await engine.write(store, root, engine.codec.encodeVariants(set), ttl, rootToken, tags) ? set : undefined
}
