// The 20 ms origin route cached in the store named by STORE (memory | redis | memcached). The
// runner requests a new id every time (/slow/<n>, n never repeats), so every request is a miss:
// a lookup, the handler, and storing the response.
import serverCache from 'fastify-server-cache'
import { cacheOptions, createApp, memcachedServers, redisUrl, serve, slowRoute } from './common.js'

const store = process.env.STORE ?? 'memory'
const backend = store === 'redis'
  ? { backend: 'redis', redis: { url: redisUrl() } }
  : store === 'memcached'
    ? { backend: 'memcached', memcached: { servers: memcachedServers() } }
    : { backend: 'memory' }

const app = createApp()
await app.register(serverCache, cacheOptions(backend))
slowRoute(app, { cache: { keyPrefix: 'slow' } })
await serve(app)
