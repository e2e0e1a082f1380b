// One app instance: Fastify with the plugin on the shared store, reading and bumping versions in
// the truth process. Started by run.js with its settings as one JSON argument:
//   { index, backend, store, truthPort, keyPrefix, lease, delay, seed }

import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import serverCache from 'fastify-server-cache'
import { announce, exitWithParent } from './child.js'
import { listOf } from './layout.js'
import { createRandom } from './random.js'

const settings = JSON.parse(process.argv[2])
const random = createRandom(settings.seed)
const truthAgent = new http.Agent({ keepAlive: true, maxSockets: 256 })

function truth (method, path) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: settings.truthPort, method, path, agent: truthAgent, timeout: 5000 }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk) => { text += chunk })
      res.on('end', () => res.statusCode === 200 ? resolve(JSON.parse(text)) : reject(new Error(`truth ${method} ${path}: ${res.statusCode} ${text}`)))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`truth ${method} ${path}: timeout`)))
    req.on('error', reject)
    req.end()
  })
}

// `filledBy` names the instance whose handler produced a body: on a stale HIT it tells which
// instance wrote the entry, which the x-cache header cannot.
const filled = (body) => ({ ...body, filledBy: settings.index })

// The pause after reading the truth is the race window: a PATCH can bump the version and
// invalidate the key while this GET still holds the old one and has yet to store it.
const readDelay = () => sleep(Math.floor(random() * (settings.delay + 1)))

const app = Fastify({ logger: false })
await app.register(serverCache, {
  backend: settings.backend,
  ...(settings.backend === 'redis' ? { redis: { url: settings.store } } : { memcached: { servers: settings.store } }),
  keyPrefix: settings.keyPrefix,
  // The store is up at start-up; a silent in-memory fallback would hide sharing bugs.
  fallback: 'none',
  lease: settings.lease ? { wait: 2000 } : false,
  ...(settings.timeout === undefined ? {} : { operationTimeout: settings.timeout }),
})

// Canonical ids only: `/items/07` would be a second key no PATCH of item 7 invalidates.
const id = { type: 'string', pattern: '^[1-9][0-9]{0,3}$' }

app.get('/items/:itemId', {
  schema: { params: { type: 'object', properties: { itemId: id }, required: ['itemId'] } },
  config: { cache: { keyPrefix: 'item', expiration: 600 } },
}, async (request) => {
  const item = await truth('GET', `/items/${request.params.itemId}`)
  await readDelay()
  return filled(item)
})

app.get('/lists/:listId', {
  schema: { params: { type: 'object', properties: { listId: id }, required: ['listId'] } },
  config: { cache: { keyPrefix: 'list', expiration: 600 } },
}, async (request) => {
  const list = await truth('GET', `/lists/${request.params.listId}`)
  await readDelay()
  return filled(list)
})

app.patch('/items/:itemId', {
  schema: {
    params: { type: 'object', properties: { itemId: id }, required: ['itemId'] },
    querystring: { type: 'object', properties: { listId: id }, required: ['listId'] },
  },
  config: { cache: { keyPrefix: 'item', toInvalidateExtra: { list: '{listId}' } } },
}, async (request, reply) => {
  const itemId = Number(request.params.itemId)
  // A wrong listId would leave the real list's entry in place: refuse it rather than let the
  // soak report staleness it caused itself.
  if (Number(request.query.listId) !== listOf(itemId)) {
    return reply.code(400).send({ error: `item ${itemId} is in list ${listOf(itemId)}` })
  }
  return truth('POST', `/items/${itemId}/bump`)
})

await app.listen({ port: 0, host: '127.0.0.1' })
announce({ port: app.server.address().port })
exitWithParent(() => app.close())
