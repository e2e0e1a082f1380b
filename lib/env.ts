import { CacheConfigurationError } from './errors.js'
import type { ServerCacheOptions } from './schemas.js'

type Env = Record<string, string | undefined>

/**
 * Plugin options from environment variables (the seeds' names and units). Unset variables are
 * left out, so the result can be spread under explicit options; a malformed one throws naming it.
 */
export function cacheOptionsFromEnv (env: Env = process.env): ServerCacheOptions {
  const read = reader(env)
  const options: ServerCacheOptions = {}
  const redis: NonNullable<ServerCacheOptions['redis']> = {}
  const memcached: NonNullable<ServerCacheOptions['memcached']> = {}
  const compression: NonNullable<ServerCacheOptions['compression']> = {}

  assign(options, 'enabled', read('CACHE_ENABLED', bool))
  assign(options, 'backend', read('CACHE_BACKEND', oneOf(['memory', 'redis', 'memcached'] as const)))
  assign(options, 'defaultExpiration', read('DEFAULT_CACHE_EXPIRATION', int(1)))
  assign(options, 'maxExpiration', read('CACHE_MAX_EXPIRATION', int(1)))
  assign(options, 'keyPrefix', read('CACHE_KEY_PREFIX', nonEmpty))
  assign(options, 'statistics', read('CACHE_STATISTICS_ENABLED', bool))
  assign(options, 'operationTimeout', read('CACHE_OPERATION_TIMEOUT', int(1)))

  assign(redis, 'url', read('CACHE_REDIS_URL', nonEmpty))
  assign(redis, 'host', read('CACHE_REDIS_HOST', nonEmpty))
  assign(redis, 'port', read('CACHE_REDIS_PORT', int(1, 65535)))
  assign(redis, 'db', read('CACHE_REDIS_DB', int(0)))
  assign(redis, 'username', read('CACHE_REDIS_USERNAME', text))
  assign(redis, 'password', read('CACHE_REDIS_PASSWORD', text))
  assign(redis, 'tls', read('CACHE_REDIS_TLS', bool))
  // Seconds in the environment (as in the seeds), milliseconds in the option.
  assign(redis, 'connectTimeout', read('CACHE_REDIS_CONNECT_TIMEOUT', seconds))

  assign(memcached, 'servers', read('CACHE_MEMCACHED_SERVERS', servers))
  assign(memcached, 'username', read('CACHE_MEMCACHED_USERNAME', text))
  assign(memcached, 'password', read('CACHE_MEMCACHED_PASSWORD', text))

  assign(compression, 'enabled', read('CACHE_COMPRESSION_ENABLED', bool))
  assign(compression, 'threshold', read('CACHE_COMPRESSION_THRESHOLD', int(0)))

  if (Object.keys(redis).length > 0) options.redis = redis
  if (Object.keys(memcached).length > 0) options.memcached = memcached
  if (Object.keys(compression).length > 0) options.compression = compression
  return options
}

type Parse<T> = (raw: string) => T | undefined

function reader (env: Env) {
  return function read<T> (name: string, parse: Parse<T> & { expected?: string }): T | undefined {
    const raw = env[name]
    if (raw === undefined) return undefined
    // Credentials are taken verbatim; everything else forgives stray whitespace.
    const value = parse(parse === text ? raw : raw.trim())
    if (value === undefined) {
      throw new CacheConfigurationError(`${name}: expected ${parse.expected ?? 'a valid value'}, got '${raw}'`)
    }
    return value
  }
}

function assign<O extends object, K extends keyof O> (target: O, key: K, value: O[K] | undefined): void {
  if (value !== undefined) target[key] = value
}

const bool = Object.assign((raw: string) => {
  const v = raw.toLowerCase()
  if (v === 'true' || v === '1' || v === 'yes') return true
  if (v === 'false' || v === '0' || v === 'no') return false
  return undefined
}, { expected: 'true, false, 1, 0, yes or no' })

function int (min: number, max = Number.MAX_SAFE_INTEGER) {
  return Object.assign((raw: string) => {
    if (!/^\d+$/.test(raw)) return undefined
    const n = Number(raw)
    return n >= min && n <= max ? n : undefined
  }, { expected: `an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` to ${max}`}` })
}

const seconds = Object.assign((raw: string) => {
  if (!/^\d+(\.\d+)?$/.test(raw)) return undefined
  const ms = Math.round(Number(raw) * 1000)
  return ms >= 1 ? ms : undefined
}, { expected: 'a number of seconds > 0' })

function oneOf<T extends string> (values: readonly T[]) {
  return Object.assign((raw: string) => values.find((v) => v === raw.toLowerCase()), { expected: values.map((v) => `'${v}'`).join(' | ') })
}

const nonEmpty = Object.assign((raw: string) => raw === '' ? undefined : raw, { expected: 'a non-empty string' })
const text = (raw: string): string => raw

const servers = Object.assign((raw: string) => {
  const list = raw.split(',').map((s) => s.trim())
  return list.length > 0 && list.every((s) => /^[^\s:,]+:\d{1,5}$/.test(s)) ? list.join(',') : undefined
}, { expected: 'host:port[,host:port...]' })
