// The source of truth outside the cache: one version number per item, in one process, so every
// instance reads and bumps the same numbers and the driver can tell a stale answer from a fresh
// one. Plain node:http: it must not share any code path with the plugin under test.
//
//   GET  /items/:id       { id, version }
//   GET  /lists/:id       { id, items: [{ id, version }] }   (one consistent snapshot)
//   POST /items/:id/bump  { id, version }                    (the incremented version)

import http from 'node:http'
import { ITEM_COUNT, LIST_COUNT, itemsOf } from './layout.js'
import { announce, exitWithParent } from './child.js'

const versions = new Map(Array.from({ length: ITEM_COUNT }, (_, i) => [i + 1, 0]))
const item = (id) => ({ id, version: versions.get(id) })

function answer (method, url) {
  const match = /^\/(items|lists)\/(\d+)(\/bump)?$/.exec(url)
  if (match === null) return undefined
  const [, kind, rawId, bump] = match
  const id = Number(rawId)
  if (kind === 'lists') return method === 'GET' && !bump && id >= 1 && id <= LIST_COUNT ? { id, items: itemsOf(id).map(item) } : undefined
  if (!versions.has(id)) return undefined
  if (method === 'GET' && !bump) return item(id)
  if (method === 'POST' && bump) {
    versions.set(id, versions.get(id) + 1)
    return item(id)
  }
  return undefined
}

const server = http.createServer((req, res) => {
  req.resume()
  const body = answer(req.method, req.url)
  res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body ?? { error: `no ${req.method} ${req.url}` }))
})
// The instances keep their connections open for the whole run.
server.keepAliveTimeout = 120_000

server.listen(0, '127.0.0.1', () => announce({ port: server.address().port }))
exitWithParent(() => new Promise((resolve) => {
  server.closeAllConnections()
  server.close(resolve)
}))
