import { Type, type Static, type TSchema } from '@sinclair/typebox'
import type { FastifyRequest, onRequestHookHandler } from 'fastify'

// One schema per option object: validation at register/onRoute and the public TypeScript types
// both come from here, so they cannot drift apart.

const Seconds = Type.Integer({ minimum: 1 })
const Millis = Type.Integer({ minimum: 1 })
const BackendKindSchema = Type.Union([Type.Literal('memory'), Type.Literal('redis'), Type.Literal('memcached')])

/** Checked as "is a function"; the static type says what the function receives. */
function FunctionOf<T> (): TSchema & { static: T } {
  return Type.Unsafe<T>(Type.Function([], Type.Unknown()))
}

export const RedisOptionsSchema = Type.Object({
  url: Type.Optional(Type.String({ minLength: 1 })),
  host: Type.Optional(Type.String({ minLength: 1 })),
  port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  db: Type.Optional(Type.Integer({ minimum: 0 })),
  username: Type.Optional(Type.String()),
  password: Type.Optional(Type.String()),
  tls: Type.Optional(Type.Union([Type.Boolean(), Type.Record(Type.String(), Type.Unknown())])),
  connectTimeout: Type.Optional(Millis),
  /** An ioredis `Redis` or `Cluster` the plugin uses as is and never closes. */
  client: Type.Optional(Type.Unsafe<import('ioredis').Redis | import('ioredis').Cluster>(Type.Object({}))),
}, { additionalProperties: false })

export const MemcachedOptionsSchema = Type.Object({
  servers: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })])),
  username: Type.Optional(Type.String()),
  password: Type.Optional(Type.String()),
  timeout: Type.Optional(Millis),
  /** A memjs `Client` the plugin uses as is and never closes. */
  client: Type.Optional(Type.Unsafe<import('memjs').Client>(Type.Object({}))),
}, { additionalProperties: false })

export const MemoryOptionsSchema = Type.Object({
  maxEntries: Type.Optional(Type.Integer({ minimum: 1 })),
  maxBytes: Type.Optional(Type.Integer({ minimum: 1024 })),
}, { additionalProperties: false })

export const BackendSpecSchema = Type.Object({
  backend: BackendKindSchema,
  redis: Type.Optional(RedisOptionsSchema),
  memcached: Type.Optional(MemcachedOptionsSchema),
  memory: Type.Optional(MemoryOptionsSchema),
}, { additionalProperties: false })

export const ManagementRoutesSchema = Type.Object({
  prefix: Type.Optional(Type.String({ pattern: '^/' })),
  /** The access check: one hook or several, run before every management route. */
  onRequest: Type.Optional(Type.Union([
    FunctionOf<onRequestHookHandler>(),
    Type.Array(FunctionOf<onRequestHookHandler>()),
  ])),
  allowUnauthenticated: Type.Optional(Type.Boolean()),
}, { additionalProperties: false })

export const MetricsOptionsSchema = Type.Object({
  /** A prom-client `Registry` (the app's own): the metrics go there and no /metrics route is added. */
  registry: Type.Optional(Type.Unsafe<import('prom-client').Registry>(Type.Object({}))),
  prefix: Type.Optional(Type.String({ pattern: '^[a-zA-Z_:][a-zA-Z0-9_:]*$', description: 'a Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)' })),
}, { additionalProperties: false })

export const PluginOptionsSchema = Type.Object({
  enabled: Type.Optional(Type.Boolean()),
  backend: Type.Optional(BackendKindSchema),
  backends: Type.Optional(Type.Record(Type.String({ minLength: 1 }), BackendSpecSchema)),
  defaultExpiration: Type.Optional(Seconds),
  maxExpiration: Type.Optional(Seconds),
  keyPrefix: Type.Optional(Type.String({ minLength: 1 })),
  redis: Type.Optional(RedisOptionsSchema),
  memcached: Type.Optional(MemcachedOptionsSchema),
  memory: Type.Optional(MemoryOptionsSchema),
  /** Bytes: a larger response body (or serialized provider value) is served but not stored. */
  maxEntryBytes: Type.Optional(Type.Integer({ minimum: 1 })),
  compression: Type.Optional(Type.Object({
    enabled: Type.Optional(Type.Boolean()),
    threshold: Type.Optional(Type.Integer({ minimum: 0 })),
  }, { additionalProperties: false })),
  statistics: Type.Optional(Type.Boolean()),
  fallback: Type.Optional(Type.Union([Type.Literal('memory'), Type.Literal('none')])),
  operationTimeout: Type.Optional(Millis),
  /**
   * Cross-instance fill lease (Redis and Memcached): on a miss, one instance takes a lease on the
   * key (`SET NX` / `add`) and runs the handler; the others poll for its entry for up to `wait`
   * ms, then run the handler themselves. `ttl` bounds how long a lease is held (whole seconds).
   */
  lease: Type.Optional(Type.Union([Type.Literal(false), Type.Object({
    ttl: Type.Optional(Millis),
    wait: Type.Optional(Millis),
    poll: Type.Optional(Millis),
  }, { additionalProperties: false })])),
  cacheHeader: Type.Optional(Type.Union([Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), Type.Literal(false)])),
  managementRoutes: Type.Optional(Type.Union([Type.Literal(false), ManagementRoutesSchema])),
  /** RFC 9211 `Cache-Status` on every cached route's response. */
  cacheStatus: Type.Optional(Type.Boolean()),
  metrics: Type.Optional(Type.Union([Type.Literal(false), MetricsOptionsSchema])),
}, { additionalProperties: false })

const IdType = Type.Union([Type.Literal('integer'), Type.Literal('string')])
/** Up to 255 tags per entry are stored with it; a tag name is a non-empty string. */
const TagTemplate = Type.String({ minLength: 1, maxLength: 1024 })
const MAX_ROUTE_TAGS = 64

export const RouteCacheConfigSchema = Type.Object({
  keyPrefix: Type.Union([Type.String({ minLength: 1 }), FunctionOf<(request: FastifyRequest) => string>()]),
  resourceIdName: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Null()])),
  resourceIdType: Type.Optional(Type.Union([IdType, Type.Array(IdType, { minItems: 1 })])),
  expiration: Type.Optional(Seconds),
  toInvalidateExtra: Type.Optional(Type.Record(Type.String({ minLength: 1 }), Type.String({ minLength: 1 }))),
  patternToInvalidateExtra: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  backendName: Type.Optional(Type.String({ minLength: 1 })),
  statusCodes: Type.Optional(Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), { minItems: 1 })),
  vary: Type.Optional(Type.Array(Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }))),
  /** GET routes: tag templates (`'owner:{ownerId}'`) the stored response carries. */
  tags: Type.Optional(Type.Array(TagTemplate, { maxItems: MAX_ROUTE_TAGS })),
  /** Mutations: tag templates invalidated after a 2xx. */
  invalidateTags: Type.Optional(Type.Array(TagTemplate)),
  /** GET routes: seconds after `expiration` during which the expired entry is served (STALE) while one refresh runs. */
  staleWhileRevalidate: Type.Optional(Type.Integer({ minimum: 0 })),
  /** GET routes: seconds after `expiration` during which the expired entry answers instead of an error (5xx, thrown). */
  staleIfError: Type.Optional(Type.Integer({ minimum: 0 })),
  /** GET routes with staleIfError: ms after which a slow handler is answered from the expired entry. */
  staleTimeout: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Mutations: namespace templates (`'user_{ownerId}_widgets'`) cleared after a 2xx. */
  invalidateNamespaces: Type.Optional(Type.Array(Type.String({ minLength: 1, pattern: '^[^:]+$', description: "a non-empty namespace template without ':'" }))),
}, { additionalProperties: false })

export type BackendKind = Static<typeof BackendKindSchema>
export type RedisOptions = Static<typeof RedisOptionsSchema>
export type MemcachedOptions = Static<typeof MemcachedOptionsSchema>
export type MemoryOptions = Static<typeof MemoryOptionsSchema>
export type BackendSpec = Static<typeof BackendSpecSchema>
export type ManagementRoutesOptions = Static<typeof ManagementRoutesSchema>
/** Options of `app.register(serverCache, options)`. */
export type ServerCacheOptions = Static<typeof PluginOptionsSchema>
/** A route's `config.cache`. */
export type RouteCacheConfig = Static<typeof RouteCacheConfigSchema>
