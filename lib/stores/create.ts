import type { FastifyInstance } from 'fastify'
import type { ResolvedOptions } from '../options.js'
import type { ManagedStore } from '../engine.js'
import { createFailoverStore, type FailoverContext } from './failover.js'
import { createMemcachedStore } from './memcached.js'
import { MemoryStore } from './memory.js'
import { createRedisStore } from './redis.js'
import type { Store, StoreContext } from './store.js'

type Spec = ResolvedOptions['backends'] extends Map<string, infer S> ? S : never

/**
 * Build one configured store. Remote stores are wrapped in the shared failover layer (timeouts,
 * circuit breaker, start-up fallback, replay of missed invalidations); memory needs none.
 */
export function createStore (spec: Spec, opts: ResolvedOptions, fastify: FastifyInstance, observe?: FailoverContext['observe']): ManagedStore {
  if (spec.backend === 'memory') return new MemoryStore(spec.memory)
  const ctx: StoreContext = { keyPrefix: opts.keyPrefix, operationTimeout: opts.operationTimeout, maxExpiration: opts.maxExpiration, log: fastify.log }
  const primary: Store = spec.backend === 'redis'
    ? createRedisStore(spec.redis, { ...ctx, fastify })
    : createMemcachedStore(spec.memcached, ctx)
  return createFailoverStore(primary, { ...ctx, fallback: opts.fallback, memory: spec.memory, observe })
}
