// Ceiling: an onRequest hook doing one ioredis GET and replying with the bytes (the least a Redis
// hit has to do); SHARED_READS=1 shares one GET among concurrent lookups of a key.
import { Redis } from 'ioredis'
import { ceilingServer, redisUrl } from './common.js'

const redis = new Redis(redisUrl())
await ceilingServer({
  get: (key) => redis.getBuffer(key),
  set: (key, body) => redis.set(key, body, 'EX', 3600),
  close: async () => { await redis.quit() },
})
