// Ceiling: an onRequest hook doing one memjs get and replying with the bytes (the least a
// Memcached hit has to do); SHARED_READS=1 shares one get among concurrent lookups of a key.
import memjs from 'memjs'
import { ceilingServer, memcachedServers } from './common.js'

const client = memjs.Client.create(memcachedServers(), { logger: { log () {} } })
await ceilingServer({
  get: async (key) => (await client.get(key)).value,
  set: (key, body) => client.set(key, body, { expires: 3600 }),
  close: async () => { client.close() },
})
