// The item route cached in Redis (also the many-keys Redis variant).
import serverCache from 'fastify-server-cache'
import { cacheOptions, createApp, itemRoute, redisUrl, serve } from './common.js'

const app = createApp()
await app.register(serverCache, cacheOptions({ backend: 'redis', redis: { url: redisUrl() } }))
itemRoute(app, { cache: { keyPrefix: 'item' } })
await serve(app)
