import type { FastifyRequest } from 'fastify'
import { CacheConfigurationError } from './errors.js'
import { escapeGlob } from './glob.js'

/** Why a request could not be keyed; the request then runs uncached (BYPASS) with a warning. */
export class KeyError extends Error {}

/** Where placeholder values come from, in order. Body is only read once it has been parsed. */
export interface KeySource { params: unknown, query: unknown, body: unknown }

// Characters a value keeps as they are: letters, digits and `-.~`. Everything else is written as
// the percent-encoded UTF-8 bytes of the character, so an encoded value is printable ASCII made of
// those characters and `%XX` only. Any other character in a template's literal text (`:`, `_`, `/`,
// `|`, a space, `é`...) can therefore never come from a value: it ends the value before it.
const SAFE = /^[A-Za-z0-9.~-]*$/
// `u`: an astral character is one match (four bytes), a lone surrogate one match too (see below).
const UNSAFE = /[^A-Za-z0-9.~-]/gu
/** What a template's literal text needs between two placeholders: a character no value keeps. */
const SEPARATOR = /[^A-Za-z0-9.~%-]/

const hex = (byte: number): string => (byte < 16 ? '%0' : '%') + byte.toString(16).toUpperCase()

/**
 * A code point's UTF-8 bytes, percent-encoded. A lone surrogate (JSON bodies can carry one) gets
 * the three bytes UTF-8 would give its code point, which no real character has: Redis and
 * Memcached would otherwise receive U+FFFD for every lone surrogate, one key for many values.
 */
function percent (char: string): string {
  const cp = char.codePointAt(0) as number
  if (cp < 0x80) return hex(cp)
  if (cp < 0x800) return hex(0xc0 | (cp >> 6)) + hex(0x80 | (cp & 0x3f))
  if (cp < 0x10000) return hex(0xe0 | (cp >> 12)) + hex(0x80 | ((cp >> 6) & 0x3f)) + hex(0x80 | (cp & 0x3f))
  return hex(0xf0 | (cp >> 18)) + hex(0x80 | ((cp >> 12) & 0x3f)) + hex(0x80 | ((cp >> 6) & 0x3f)) + hex(0x80 | (cp & 0x3f))
}

/**
 * A user value as one key segment: `encodeURIComponent` that also encodes `_ ! ' ( ) *` and
 * never throws. One-to-one (percent-decoding gives the value back), and the result holds no
 * separator, no glob character, no whitespace or control character and no NUL (which marks the
 * plugin's guard keys), whatever the value.
 */
export function encodeSegment (value: string): string {
  return SAFE.test(value) ? value : value.replace(UNSAFE, percent)
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

export type Render = (source: KeySource) => string

/**
 * How a template's values are written: `key` (keys and namespaces) encodes each as one segment,
 * `pattern` also escapes it for globs (a no-op on an encoded value, kept as a second line), and
 * `exact` (tags) fills it in as the request has it, refusing only NUL.
 */
export type Fill = 'key' | 'pattern' | 'exact'

const FILLS: Record<Fill, (value: string) => string> = {
  key: encodeSegment,
  pattern: (value) => escapeGlob(encodeSegment(value)),
  exact: (value) => {
    if (value.includes('\0')) throw new KeyError('a tag value contains a NUL character')
    return value
  },
}

/**
 * Compile a `{name}` template once, at route registration, into a function that fills it per
 * request. A missing placeholder throws KeyError naming it. A `key` or `pattern` template whose
 * placeholders are not kept apart by a separator is refused: `{x}-{y}` would build `a-b-c` for
 * both x='a', y='b-c' and x='a-b', y='c', and so serve one user's entry to another.
 */
export function compileTemplate (template: string, where: string, fill: Fill = 'key'): Render {
  if (/[{}]/.test(template.replace(/\{[^{}]+\}/g, ''))) {
    throw new CacheConfigurationError(`${where}: unbalanced or empty placeholder in '${template}'`)
  }
  if (template.includes('\0')) throw new CacheConfigurationError(`${where}: NUL is not allowed in '${template.replace(/\0/g, '\\0')}'`)
  const parts = template.split(/\{([^{}]+)\}/)
  if (parts.length === 1) return () => template
  if (fill !== 'exact') refuseAmbiguous(parts, template, where)
  const escape = FILLS[fill]
  return (source) => {
    let out = parts[0]
    for (let i = 1; i < parts.length; i += 2) {
      const value = lookup(source, parts[i])
      if (value === undefined) throw new KeyError(`placeholder {${parts[i]}} is missing from the request`)
      out += escape(value) + parts[i + 1]
    }
    return out
  }
}

/**
 * An encoded value runs up to the first separator after it, so a key splits back into its values
 * (and two different value lists never build one key) when the literal text between every two
 * different placeholders holds a separator. Text before the first and after the last one is
 * fixed, and `{x}{x}` is one value written twice.
 */
function refuseAmbiguous (parts: string[], template: string, where: string): void {
  for (let i = 2; i < parts.length - 1; i += 2) {
    if (parts[i - 1] === parts[i + 1] || SEPARATOR.test(parts[i])) continue
    const joint = parts[i] === '' ? 'nothing separates them' : `'${parts[i]}' between them can also occur in a value`
    throw new CacheConfigurationError(
      `${where}: '${template}' is ambiguous: {${parts[i - 1]}} and {${parts[i + 1]}} could be filled two ways to build the same key (${joint}); ` +
      "join placeholders with a separator such as ':' or '_' (any character other than a letter, a digit, '-', '.', '~' or '%')"
    )
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
    prefix = compileTemplate(keyPrefix, where)
  }
  if (resourceId === null) return prefix
  return (request) => prefix(request) + ':' + resourceId(request)
}
