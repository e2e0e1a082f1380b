// Stretch evidence: onrequest-memjs.js, but concurrent lookups of one key share one in-flight
// get (what the plugin could do in its store read).
import memjs from 'memjs'
import { payload } from '../payload.js'
import { calls, createApp, memcachedServers, serve } from './common.js'

const client = memjs.Client.create(memcachedServers(), { logger: { log () {} } })
const prefix = (process.env.KEY_PREFIX ?? 'bench') + ':item:'
const inflight = new Map()

function read (key) {
  let pending = inflight.get(key)
  if (pending === undefined) {
    pending = client.get(key).then(({ value }) => value).finally(() => inflight.delete(key))
    inflight.set(key, pending)
  }
  return pending
}

const app = createApp()
app.addHook('onClose', async () => { client.close() })
app.get('/items/:id', {
  onRequest: async (request, reply) => {
    const body = await read(prefix + request.params.id)
    if (body !== null) return reply.type('application/json; charset=utf-8').send(body)
  },
}, async (request, reply) => {
  calls.count++
  const body = JSON.stringify(payload(Number(request.params.id)))
  await client.set(prefix + request.params.id, body, { expires: 3600 })
  reply.type('application/json; charset=utf-8')
  return body
})
await serve(app)
