// CommonJS users get the same types through require().
import fastify = require('fastify')
import cache = require('fastify-server-cache')

const app = fastify.default()
app.register(cache.serverCache, { backend: 'memory' })
app.register(cache.default, cache.cacheOptionsFromEnv())
const stats: cache.CacheStats = app.cache.stats()
void stats
