// Ceiling: the same route sending a pre-serialized string (what a hit can at best be: no
// JSON.stringify per request).
import { payload } from '../payload.js'
import { calls, createApp, serve } from './common.js'

const app = createApp()
const bodies = new Map()
app.get('/items/:id', async (request, reply) => {
  let body = bodies.get(request.params.id)
  if (body === undefined) {
    calls.count++
    body = JSON.stringify(payload(Number(request.params.id)))
    bodies.set(request.params.id, body)
  }
  reply.type('application/json; charset=utf-8')
  return body
})
await serve(app)
