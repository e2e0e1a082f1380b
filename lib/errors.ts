/**
 * Every error the plugin throws or rejects with. Codes are stable: match on `code`, not on the
 * message, which names the offending option or value for humans.
 */
export class CacheError extends Error {
  readonly code: string = 'FST_CACHE_ERROR'

  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
  }
}

/** A plugin option, route `config.cache` field or environment variable is invalid. */
export class CacheConfigurationError extends CacheError {
  override readonly code = 'FST_CACHE_CONFIGURATION'
}

/** A route or call asks for something the cache cannot do (e.g. invalidation on a GET route). */
export class InvalidRequestError extends CacheError {
  override readonly code = 'FST_CACHE_INVALID_REQUEST'
  /** Fastify answers 400 when a handler lets this one through (e.g. a bad namespace). */
  readonly statusCode = 400
}

/** Memcached has no way to enumerate keys, so glob patterns cannot be matched there. */
export class PatternMatchingNotSupportedError extends CacheError {
  override readonly code = 'FST_CACHE_PATTERN_NOT_SUPPORTED'
}

/** The store's server did not answer (error, timeout or open circuit). */
export class BackendUnavailableError extends CacheError {
  override readonly code = 'FST_CACHE_BACKEND_UNAVAILABLE'
}
