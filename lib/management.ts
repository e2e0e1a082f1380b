import type { FastifyInstance, onRequestHookHandler } from 'fastify'
import type { Registry } from 'prom-client'
import type { CacheProvider } from './provider.js'

/**
 * The management routes. Every one of them carries the user's access check: registration
 * refuses to expose them without one unless `allowUnauthenticated` was said out loud.
 */
export function managementRoutes (app: FastifyInstance, cache: CacheProvider, backend: string, options: { prefix: string, onRequest: onRequestHookHandler[] }, registry?: Registry): void {
  const onRequest = options.onRequest
  const p = options.prefix

  app.get(`${p}/stats`, { onRequest }, async () => cache.stats())

  app.get(`${p}/ping`, { onRequest }, async (_request, reply) => {
    const ok = await cache.ping()
    reply.code(ok ? 200 : 503)
    return { ok, backend, fallbackActive: cache.stats().fallbackActive }
  })

  app.delete(`${p}/clear`, { onRequest }, async () => {
    await cache.clear()
    return { cleared: true }
  })

  app.delete<{ Params: { namespace: string } }>(`${p}/clear/:namespace`, { onRequest }, async (request) => {
    await cache.clear({ namespace: request.params.namespace })
    return { cleared: true, namespace: request.params.namespace }
  })

  app.delete<{ Params: { tag: string } }>(`${p}/tags/:tag`, { onRequest }, async (request) => {
    await cache.invalidateTags(request.params.tag)
    return { invalidated: true, tag: request.params.tag }
  })

  // Only the plugin's own registry: metrics registered in the app's registry are served by the app.
  if (registry !== undefined) {
    app.get(`${p}/metrics`, { onRequest }, async (_request, reply) => {
      reply.header('content-type', registry.contentType)
      return await registry.metrics()
    })
  }

  app.post(`${p}/reset-stats`, { onRequest }, async () => {
    cache.resetStats()
    return { reset: true }
  })
}
