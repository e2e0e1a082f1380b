// Ceiling: an onRequest hook doing one memjs get and replying with the bytes (the least a
// Memcached hit has to do).
import memjs from 'memjs'
import { payload } from '../payload.js'
import { calls, createApp, memcachedServers, serve } from './common.js'

const client = memjs.Client.create(memcachedServers(), { logger: { log () {} } })
const prefix = (process.env.KEY_PREFIX ?? 'bench') + ':item:'
const app = createApp()
app.addHook('onClose', async () => { client.close() })
app.get('/items/:id', {
  onRequest: async (request, reply) => {
    const { value } = await client.get(prefix + request.params.id)
    if (value !== null) return reply.type('application/json; charset=utf-8').send(value)
  },
}, async (request, reply) => {
  calls.count++
  const body = JSON.stringify(payload(Number(request.params.id)))
  await client.set(prefix + request.params.id, body, { expires: 3600 })
  reply.type('application/json; charset=utf-8')
  return body
})
await serve(app)
