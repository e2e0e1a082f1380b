import type { FastifyRequest } from 'fastify'
import { CacheConfigurationError } from './errors.js'

/** Why a request could not be keyed; the request then runs uncached (BYPASS) with a warning. */
export class KeyError extends Error {}

/** Where placeholder values come from, in order. Body is only read once it has been parsed. */
export interface KeySource { params: unknown, query: unknown, body: unknown }

/**
 * A user value inside a key is one segment: `:` would let `{a}:{b}` with a='x:y', b='z' collide
 * with a='x', b='y:z', and let a value reach into another namespace. Percent-encode the separator
 * (and `%` itself, so the mapping stays one-to-one), and NUL, which marks the plugin's guard keys.
 */
export function encodeSegment (value: string): string {
  return /[%:\0]/.test(value) ? value.replace(/%/g, '%25').replace(/:/g, '%3A').replace(/\0/g, '%00') : value
}

/** The value of a request field, params first, then query, then top-level body fields. */
export function lookup (source: KeySource, name: string): string | undefined {
  const v = pick(source.params, name) ?? pick(source.query, name) ?? pick(source.body, name)
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v)
  throw new KeyError(`field '${name}' is not a single value`)
}

function pick (from: unknown, name: string): unknown {
  if (from === null || typeof from !== 'object') return undefined
  return Object.hasOwn(from, name) ? (from as Record<string, unknown>)[name] : undefined
}

export type Render = (source: KeySource, escape?: (s: string) => string) => string

/**
 * Compile a `{name}` template once, at route registration, into a function that fills it per
 * request. A missing placeholder throws KeyError naming it.
 */
export function compileTemplate (template: string, where: string): { render: Render } {
  if (/[{}]/.test(template.replace(/\{[^{}]+\}/g, ''))) {
    throw new CacheConfigurationError(`${where}: unbalanced or empty placeholder in '${template}'`)
  }
  if (template.includes('\0')) throw new CacheConfigurationError(`${where}: NUL is not allowed in '${template.replace(/\0/g, '\\0')}'`)
  const parts = template.split(/\{([^{}]+)\}/)
  if (parts.length === 1) return { render: () => template }
  return {
    render (source, escape = encodeSegment) {
      let out = parts[0]
      for (let i = 1; i < parts.length; i += 2) {
        const value = lookup(source, parts[i])
        if (value === undefined) throw new KeyError(`placeholder {${parts[i]}} is missing from the request`)
        out += escape(value) + parts[i + 1]
      }
      return out
    },
  }
}

export type IdType = 'integer' | 'string'

/** The route's URL params, in path order (`/a/:orgId/b/:id` → ['orgId', 'id']). */
export function routeParams (url: string): string[] {
  return [...url.matchAll(/:([A-Za-z0-9_$-]+)/g)].map((m) => m[1]).concat(url.endsWith('*') ? ['*'] : [])
}

/**
 * Pick the resource id at registration: explicit name, `null` for none, or inferred from the
 * route's params as API.md describes. Returns a per-request reader, or null for "no id".
 */
export function compileResourceId (
  resourceIdName: string | null | undefined, types: IdType[], url: string
): ((source: KeySource) => string) | null {
  if (resourceIdName === null) return null
  const params = routeParams(url)
  const name = resourceIdName ?? (types.includes('string') ? params[0] : params.find((p) => p === 'id' || /(Id|_id)$/.test(p)))
  if (name === undefined) return null
  // Only an inferred id is held to its type: a named one is whatever the request carries.
  const integerOnly = resourceIdName === undefined && !types.includes('string')
  return (source) => {
    const v = lookup(source, name)
    if (v === undefined) throw new KeyError(`resource id '${name}' is missing from the request`)
    if (integerOnly && !/^-?\d+$/.test(v)) throw new KeyError(`resource id '${name}' is '${v.slice(0, 40)}', not an integer`)
    return encodeSegment(v)
  }
}

/** `{prefix}:{id}` or just `{prefix}`: compiled once, called per request. */
export function compileKey (
  keyPrefix: string | ((request: FastifyRequest) => string),
  resourceId: ((source: KeySource) => string) | null,
  where: string
): (request: FastifyRequest) => string {
  let prefix: (request: FastifyRequest) => string
  if (typeof keyPrefix === 'function') {
    prefix = (request) => {
      const p = keyPrefix(request)
      if (typeof p !== 'string' || p.length === 0) throw new KeyError(`keyPrefix function returned ${typeof p === 'string' ? 'an empty string' : typeof p}`)
      if (p.includes('\0')) throw new KeyError('keyPrefix function returned a key with a NUL character')
      return p
    }
  } else {
    prefix = compileTemplate(keyPrefix, where).render
  }
  if (resourceId === null) return prefix
  return (request) => prefix(request) + ':' + resourceId(request)
}
