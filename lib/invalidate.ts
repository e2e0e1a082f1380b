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

/**
 * The mutation route's `onSend` hook: after a 2xx, delete the route's key, its extra keys and
 * pattern matches, and only then let the response go (a client that gets the 200 and reads
 * again sees the new data). Non-2xx responses and thrown errors touch nothing.
 */
export function makeInvalidate (engine: Engine, store: ManagedStore, own: KeysOf, extras: KeysOf[], patterns: KeysOf[]): onSendHookHandler {
  const keyed = [own, ...extras]
  return async function cacheInvalidate (request, reply, payload) {
    if (!MUTATIONS.has(request.method) || reply.statusCode < 200 || reply.statusCode >= 300) return payload
    const keys = build(request, keyed).map((k) => engine.prefix + k)
    const globs = build(request, patterns)
    await Promise.all([
      engine.remove(store, keys),
      ...globs.map((g) => engine.removePattern(store, engine.escapedPrefix + g).catch((err) => {
        if (!(err instanceof PatternMatchingNotSupportedError)) throw err
        request.log.error({ err, pattern: g }, `Cache pattern invalidation skipped: ${err.message}`)
      })),
    ])
    return payload
  }
}

function build (request: FastifyRequest, parts: KeysOf[]): string[] {
  const out: string[] = []
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
