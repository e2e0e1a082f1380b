// Ceiling: an onRequest hook replying from a Map (the least a memory-store hit has to do).
import { payload } from '../payload.js'
import { calls, createApp, serve } from './common.js'

const app = createApp()
const entries = new Map()
app.get('/items/:id', {
  onRequest: async (request, reply) => {
    const body = entries.get(request.params.id)
    if (body !== undefined) return reply.type('application/json; charset=utf-8').send(body)
  },
}, async (request, reply) => {
  calls.count++
  const body = JSON.stringify(payload(Number(request.params.id)))
  entries.set(request.params.id, body)
  reply.type('application/json; charset=utf-8')
  return body
})
await serve(app)
