// Ceiling: the leanest memory hit written by hand. A synchronous app-level onRequest hook
// (callback style) that replies the pre-serialized string a Map holds for the URL, with one
// content-type header, and nothing else; on a miss the route's handler serializes the body and
// fills the Map. Also the many-keys memory ceiling (ceil-map-sync-many).
import { payload } from '../payload.js'
import { calls, createApp, serve } from './common.js'

const app = createApp()
const entries = new Map()
app.addHook('onRequest', (request, reply, done) => {
  const body = entries.get(request.url)
  if (body === undefined) return done()
  reply.header('content-type', 'application/json; charset=utf-8').send(body)
})
app.get('/items/:id', async (request, reply) => {
  calls.count++
  const body = JSON.stringify(payload(Number(request.params.id)))
  entries.set(request.url, body)
  reply.header('content-type', 'application/json; charset=utf-8')
  return body
})
await serve(app)
