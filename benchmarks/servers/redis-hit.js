// The item route cached in Redis (also the many-keys and tagged Redis variants).
import serverCache from 'fastify-server-cache'
import { cacheOptions, createApp, itemRoute, redisUrl, serve } from './common.js'

const app = createApp()
await app.register(serverCache, cacheOptions({ backend: 'redis', redis: { url: redisUrl() } }))
// TAGS=n: the route's responses carry n tags (the tagged-hit variants), read with the entry.
const TAG_TEMPLATES = ['item:{id}', 'items', 'catalog', 'storefront', 'search']
const tags = TAG_TEMPLATES.slice(0, Number(process.env.TAGS ?? 0))
itemRoute(app, { cache: { keyPrefix: 'item', ...(tags.length > 0 ? { tags } : {}) } })
await serve(app)
