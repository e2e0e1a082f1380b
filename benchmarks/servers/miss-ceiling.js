// Ceiling for the miss path: what hand-written cache code does on a miss of the 20 ms origin
// route, with no plugin. STORE=redis (one ioredis client, defaults) or memcached (memjs): an
// onRequest GET of the key (never there: every id is new), the handler, then a SET of the
// serialized body before replying. WRITE=0 leaves out the SET: what the lookup alone costs.
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import memjs from 'memjs'
import { payload } from '../payload.js'
import { calls, createApp, memcachedServers, redisUrl, serve } from './common.js'

const prefix = (process.env.KEY_PREFIX ?? 'bench') + ':slow:'
const write = process.env.WRITE !== '0'
const store = process.env.STORE === 'memcached' ? memjsStore() : ioredisStore()

const app = createApp()
app.addHook('onClose', store.close)
app.get('/slow/:id', {
  onRequest: async (request, reply) => {
    const body = await store.get(prefix + request.params.id)
    if (body != null) return reply.type('application/json; charset=utf-8').send(body)
  },
}, async (request, reply) => {
  calls.count++
  await sleep(20)
  const body = JSON.stringify(payload(Number(request.params.id)))
  if (write) await store.set(prefix + request.params.id, body)
  reply.type('application/json; charset=utf-8')
  return body
})
await serve(app)

function ioredisStore () {
  const redis = new Redis(redisUrl())
  return {
    get: (key) => redis.getBuffer(key),
    set: (key, body) => redis.set(key, body, 'EX', 3600),
    close: async () => { await redis.quit() },
  }
}

function memjsStore () {
  const client = memjs.Client.create(memcachedServers(), { logger: { log () {} } })
  return {
    get: async (key) => (await client.get(key)).value,
    set: (key, body) => client.set(key, body, { expires: 3600 }),
    close: async () => { client.close() },
  }
}
