// Stretch evidence: onrequest-ioredis.js, but concurrent lookups of one key share one in-flight
// GET (what the plugin could do in its store read): under 50 connections on one hot key, most
// requests then cost no Redis round trip of their own.
import { Redis } from 'ioredis'
import { payload } from '../payload.js'
import { calls, createApp, redisUrl, serve } from './common.js'

const redis = new Redis(redisUrl())
const prefix = (process.env.KEY_PREFIX ?? 'bench') + ':item:'
const inflight = new Map()

function read (key) {
  let pending = inflight.get(key)
  if (pending === undefined) {
    pending = redis.getBuffer(key).finally(() => inflight.delete(key))
    inflight.set(key, pending)
  }
  return pending
}

const app = createApp()
app.addHook('onClose', async () => { await redis.quit() })
app.get('/items/:id', {
  onRequest: async (request, reply) => {
    const body = await read(prefix + request.params.id)
    if (body !== null) return reply.type('application/json; charset=utf-8').send(body)
  },
}, async (request, reply) => {
  calls.count++
  const body = JSON.stringify(payload(Number(request.params.id)))
  await redis.set(prefix + request.params.id, body, 'EX', 3600)
  reply.type('application/json; charset=utf-8')
  return body
})
await serve(app)
