// The item route cached in the memory store (also the many-keys memory variant).
import serverCache from 'fastify-server-cache'
import { cacheOptions, createApp, itemRoute, serve } from './common.js'

const app = createApp()
await app.register(serverCache, cacheOptions({ backend: 'memory' }))
itemRoute(app, { cache: { keyPrefix: 'item' } })
await serve(app)
