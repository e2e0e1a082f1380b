import type { FastifyRequest, onSendHookHandler } from 'fastify'
import type { Engine, ManagedStore } from './engine.js'
import { PatternMatchingNotSupportedError } from './errors.js'
import { compileTemplate, encodeSegment, KeyError, lookup } from './keys.js'
import type { RouteCacheConfig } from './schemas.js'

const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

export function isMutation (method: string): boolean {
  return MUTATIONS.has(method)
}

type KeysOf = (request: FastifyRequest) => string
/** The tags of a request, or undefined for a route without any. */
export type TagsOf = ((request: FastifyRequest) => string[]) | undefined

/**
 * Tag templates, compiled once. Tags are exact strings: values are filled in as the request has
 * them (no escaping is needed, a tag is never matched as a pattern), so `invalidateTags` on a
 * provider with the same literal reaches the same entries. A tag with a NUL is refused per request.
 */
export function compileTags (templates: readonly string[] | undefined, where: string): TagsOf {
  if (templates === undefined || templates.length === 0) return undefined
  const rendered = templates.map((t, i) => compileTemplate(t, `${where}[${i}]`, 'exact'))
  return (request) => rendered.map((render) => render(request))
}

/** Namespace templates, filled like key templates (a value is one key segment). */
export function compileNamespaces (templates: readonly string[] | undefined, where: string): KeysOf[] {
  return (templates ?? []).map((t, i) => compileTemplate(t, `${where}[${i}]`))
}

/**
 * `toInvalidateExtra`: `{ prefixTemplate: idTemplate | fieldName | literal }`, compiled once.
 * Values are encoded exactly as in a GET route's key (`prefix:{id}` and a resource id give one
 * spelling); a literal is template text, written as is, like the literal parts of a keyPrefix.
 */
export function compileExtras (cfg: RouteCacheConfig, where: string): KeysOf[] {
  return Object.entries(cfg.toInvalidateExtra ?? {}).map(([prefixTemplate, id]) => {
    const prefix = compileTemplate(prefixTemplate, `${where}: toInvalidateExtra`)
    const idTemplate = compileTemplate(id, `${where}: toInvalidateExtra['${prefixTemplate}']`)
    const bare = !id.includes('{')
    return (request: FastifyRequest) => {
      const field = bare ? lookup(request, id) : undefined
      return prefix(request) + ':' + (field !== undefined ? encodeSegment(field) : idTemplate(request))
    }
  })
}

/** Placeholder values are encoded and glob-escaped so that a user's `*` or `[` matches only itself. */
export function compilePatterns (cfg: RouteCacheConfig, where: string): KeysOf[] {
  return (cfg.patternToInvalidateExtra ?? []).map((p) => compileTemplate(p, `${where}: patternToInvalidateExtra`, 'pattern'))
}

/** What a mutation route invalidates, compiled at registration. */
export interface Invalidations {
  own: KeysOf
  extras: KeysOf[]
  patterns: KeysOf[]
  tags: TagsOf
  namespaces: KeysOf[]
}

/**
 * The mutation route's `onSend` hook: after a 2xx, delete the route's key, its extra keys and
 * pattern matches, invalidate its tags and clear its namespaces, and only then let the response
 * go (a client that gets the 200 and reads again sees the new data). Non-2xx responses and
 * thrown errors touch nothing.
 */
export function makeInvalidate (engine: Engine, store: ManagedStore, what: Invalidations): onSendHookHandler {
  const keyed = [what.own, ...what.extras]
  return async function cacheInvalidate (request, reply, payload) {
    if (!MUTATIONS.has(request.method) || reply.statusCode < 200 || reply.statusCode >= 300) return payload
    const keys = build(request, keyed).map((k) => engine.prefix + k)
    const globs = build(request, what.patterns)
    const tags = what.tags === undefined ? [] : build(request, [what.tags]).flat()
    const namespaces = build(request, what.namespaces)
    await Promise.all([
      engine.remove(store, keys),
      engine.invalidateTags(store, tags),
      ...namespaces.map((ns) => engine.clear(store, engine.prefix + ns + ':')),
      ...globs.map((g) => engine.removePattern(store, engine.escapedPrefix + g).catch((err) => {
        if (!(err instanceof PatternMatchingNotSupportedError)) throw err
        request.log.error({ err, pattern: g }, `Cache pattern invalidation skipped: ${err.message}`)
      })),
    ])
    return payload
  }
}

function build<T> (request: FastifyRequest, parts: Array<(request: FastifyRequest) => T>): T[] {
  const out: T[] = []
  for (const part of parts) {
    try {
      out.push(part(request))
    } catch (err) {
      if (!(err instanceof KeyError)) throw err
      request.log.warn({ reason: err.message }, `Cache invalidation key could not be built: ${err.message}; that key is skipped`)
    }
  }
  return out
}
