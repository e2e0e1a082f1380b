// The plugin registered (memory store), the same route without config.cache: what the plugin
// costs routes it does not cache. Compared with raw.js (the same app without the plugin).
import serverCache from 'fastify-server-cache'
import { cacheOptions, createApp, itemRoute, serve } from './common.js'

const app = createApp()
await app.register(serverCache, cacheOptions({ backend: 'memory' }))
itemRoute(app)
await serve(app)
