// The item route cached in Memcached (also the many-keys Memcached variant).
import serverCache from 'fastify-server-cache'
import { cacheOptions, createApp, itemRoute, memcachedServers, serve } from './common.js'

const app = createApp()
await app.register(serverCache, cacheOptions({ backend: 'memcached', memcached: { servers: memcachedServers() } }))
itemRoute(app, { cache: { keyPrefix: 'item' } })
await serve(app)
