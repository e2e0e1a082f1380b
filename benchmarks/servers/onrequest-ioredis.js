// Ceiling: an onRequest hook doing one ioredis GET and replying with the bytes (no codec, no
// fail-open, no statistics: the least a Redis hit has to do).
import { Redis } from 'ioredis'
import { payload } from '../payload.js'
import { calls, createApp, redisUrl, serve } from './common.js'

const redis = new Redis(redisUrl())
const prefix = (process.env.KEY_PREFIX ?? 'bench') + ':item:'
const app = createApp()
app.addHook('onClose', async () => { await redis.quit() })
app.get('/items/:id', {
  onRequest: async (request, reply) => {
    const body = await redis.getBuffer(prefix + request.params.id)
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
