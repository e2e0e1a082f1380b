import type { FastifyRequest, onSendHookHandler } from 'fastify'
import type { Engine, ManagedStore } from './engine.js'
import { PatternMatchingNotSupportedError } from './errors.js'
import { escapeGlob } from './glob.js'
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
  const rendered = templates.map((t, i) => compileTemplate(t, `${where}[${i}]`).render)
  const asIs = (s: string): string => {
    if (s.includes('\0')) throw new KeyError('a tag value contains a NUL character')
    return s
  }
  return (request) => rendered.map((render) => render(request, asIs))
}

/** Namespace templates, filled like key templates (a value is one key segment). */
export function compileNamespaces (templates: readonly string[] | undefined, where: string): KeysOf[] {
  return (templates ?? []).map((t, i) => compileTemplate(t, `${where}[${i}]`).render)
}

/** `toInvalidateExtra`: `{ prefixTemplate: idTemplate | fieldName | literal }`, compiled once. */
export function compileExtras (cfg: RouteCacheConfig, where: string): KeysOf[] {
  return Object.entries(cfg.toInvalidateExtra ?? {}).map(([prefixTemplate, id]) => {
    const prefix = compileTemplate(prefixTemplate, `${where}: toInvalidateExtra`).render
    const idTemplate = id.includes('{') ? compileTemplate(id, `${where}: toInvalidateExtra.${prefixTemplate}`).render : null
    return (request: FastifyRequest) => {
      const idValue = idTemplate !== null ? idTemplate(request) : encodeSegment(lookup(request, id) ?? id)
      return prefix(request) + ':' + idValue
    }
  })
}

/** Placeholder values are escaped so that a user's `*` or `[` matches only itself. */
export function compilePatterns (cfg: RouteCacheConfig, where: string): KeysOf[] {
  const escape = (s: string): string => escapeGlob(encodeSegment(s))
  return (cfg.patternToInvalidateExtra ?? []).map((p) => {
    const { render } = compileTemplate(p, `${where}: patternToInvalidateExtra`)
    return (request: FastifyRequest) => render(request, escape)
  })
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
