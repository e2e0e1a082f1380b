import { Kind, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { CacheConfigurationError } from './errors.js'

/**
 * Check `value` against `schema`; throw a CacheConfigurationError naming the option path, what was
 * expected and what was given (`backend: expected 'memory' | 'redis' | 'memcached', got 'mongo'`).
 * `where` prefixes the path (e.g. `config.cache of GET /widgets/:id`).
 */
export function validate<T extends TSchema> (schema: T, value: unknown, where?: string): void {
  if (Value.Check(schema, value)) return
  const first = firstError(schema, value, '')
  // `tags[1]`, `lease.wait`: array items as indexes, object fields as dotted names.
  const path = first.path.split('/').filter(Boolean).map((part, i) => /^\d+$/.test(part) ? `[${part}]` : i === 0 ? part : `.${part}`).join('') || '(options)'
  const name = where === undefined ? path : `${where}: ${path}`
  let message: string
  if (first.message === 'Unexpected property') {
    message = `${name}: unknown option`
  } else if (first.message === 'Expected required property') {
    message = `${name}: is required (expected ${describe(first.schema)})`
  } else {
    message = `${name}: expected ${describe(first.schema)}, got ${show(first.value)}`
  }
  throw new CacheConfigurationError(message)
}

interface Found { path: string, message: string, schema: TSchema, value: unknown }

/**
 * The most specific error: for `false | { ... }` given an object, the error inside the object
 * (`lease.wait: ...`) says more than "expected false | an object, got an object".
 */
function firstError (schema: TSchema, value: unknown, base: string): Found {
  const errors = [...Value.Errors(schema, value)]
  const first = errors.find((e) => e.message === 'Unexpected property') ?? errors[0]
  const found = { path: base + first.path, message: first.message, schema: first.schema, value: first.value }
  if (first.schema[Kind] === 'Union' && first.value !== null && typeof first.value === 'object' && !Array.isArray(first.value)) {
    const objectMember = (first.schema.anyOf as TSchema[]).find((m) => m[Kind] === 'Object')
    if (objectMember !== undefined) return firstError(objectMember, first.value, found.path)
  }
  return found
}

function describe (schema: TSchema): string {
  switch (schema[Kind]) {
    case 'Literal': return show(schema.const)
    case 'Union': return (schema.anyOf as TSchema[]).map(describe).join(' | ')
    case 'Boolean': return 'a boolean'
    case 'Null': return 'null'
    case 'Function': return 'a function'
    case 'Array': return `an array of ${describe(schema.items)}${schema.minItems ? ` (at least ${schema.minItems})` : ''}`
    case 'Record': return 'an object'
    case 'Object': return 'an object'
    case 'Integer':
    case 'Number': {
      const noun = schema[Kind] === 'Integer' ? 'an integer' : 'a number'
      const bounds = [
        schema.minimum !== undefined ? `>= ${schema.minimum}` : '',
        schema.maximum !== undefined ? `<= ${schema.maximum}` : '',
      ].filter(Boolean).join(' and ')
      return bounds ? `${noun} ${bounds}` : noun
    }
    case 'String':
      // A schema can say in words what its pattern means.
      if (typeof schema.description === 'string') return schema.description
      if (schema.pattern === '^/') return "a string starting with '/'"
      if (schema.pattern) return 'a valid header name'
      return schema.minLength ? 'a non-empty string' : 'a string'
    default: return 'a valid value'
  }
}

/** Render a user's value for an error message, short and unambiguous. */
export function show (value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 60 ? value.slice(0, 60) + '…' : value}'`
  if (typeof value === 'function') return 'a function'
  if (value === undefined) return 'undefined'
  if (Array.isArray(value)) return 'an array'
  if (value !== null && typeof value === 'object') return 'an object'
  return String(value)
}
