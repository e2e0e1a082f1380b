import Fastify, { type FastifyInstance } from 'fastify'
import serverCache, { type ServerCacheOptions } from '../../index.js'
import type { Teardown } from './redis-server.js'

/**
 * Helpers for the plugin-pair tests (test/with-*.test.ts): a Fastify app with an ecosystem
 * plugin registered before or after this one, listening on loopback, and a client that sees
 * what a browser or curl would (real HTTP through Node's fetch, not inject).
 */

/** Both registration orders: the other plugin before fastify-server-cache, or after it. */
export const ORDERS = ['plugin first', 'cache first'] as const
export type Order = typeof ORDERS[number]

/** What a client sees. `cache` is the x-cache header (null when absent). */
export interface Seen {
  status: number
  headers: Headers
  body: string
  cache: string | null
  json: () => any
}

export type Get = (path: string, init?: { headers?: Record<string, string>, method?: string }) => Promise<Seen>

/**
 * A Fastify app with `register` (the ecosystem plugin or plugins) and fastify-server-cache
 * registered in `order`; closed on teardown. Routes are added by the caller, then `listen`.
 */
export async function appWith (t: Teardown, order: Order, register: (app: FastifyInstance) => unknown, cache: ServerCacheOptions = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  const registerCache = async (): Promise<void> => {
    await app.register(serverCache, { keyPrefix: `eco-${process.pid}-${Math.random().toString(36).slice(2, 8)}`, ...cache })
  }
  if (order === 'plugin first') {
    await register(app)
    await registerCache()
  } else {
    await registerCache()
    await register(app)
  }
  return app
}

/** Listens on 127.0.0.1, a free port; returns a GET (or any method) client for it. */
export async function listen (app: FastifyInstance): Promise<Get> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return async (path, init = {}) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: init.method ?? 'GET', headers: init.headers })
    const body = await res.text()
    return { status: res.status, headers: res.headers, body, cache: res.headers.get('x-cache'), json: () => JSON.parse(body) }
  }
}

/** `status x-cache` of each response, for compact assertions over a sequence of requests. */
export function outcome (seen: Seen): string {
  return `${seen.status} ${seen.cache ?? '-'}`
}

/** The backends a file runs against: always memory; Redis when `redisUrl` is given. */
export function cacheOptions (backend: 'memory' | 'redis', redisUrl?: string): ServerCacheOptions {
  return backend === 'memory' ? {} : { backend: 'redis', redis: { url: redisUrl }, fallback: 'none' }
}
