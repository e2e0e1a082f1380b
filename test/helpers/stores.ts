import type { ServerCacheOptions } from '../../index.js'
import { startMemcached } from './memcached-server.js'
import { startRedisServer, type Teardown } from './redis-server.js'

/** Each store by name, with a function that starts its server (stopped at teardown) and gives the plugin options. */
export type StoreSetup = [name: string, options: (t: Teardown) => Promise<ServerCacheOptions>]

/** The three stores; `extra` is merged into the Redis and Memcached options (e.g. operationTimeout). */
export function threeStores (extra: ServerCacheOptions = {}): StoreSetup[] {
  return [
    ['memory', async () => ({})],
    ['redis', async (t) => ({ backend: 'redis', redis: { url: (await startRedisServer(t)).url }, ...extra })],
    ['memcached', async (t) => {
      const server = await startMemcached()
      t.teardown(() => server.stop())
      return { backend: 'memcached', memcached: { servers: server.address }, ...extra }
    }],
  ]
}
