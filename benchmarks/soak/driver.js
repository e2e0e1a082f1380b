// The load: `connections` loops, each sending one request at a time to a random instance until
// the deadline: GET item, GET list or PATCH on the hot items, every answer fed to the checker.

import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { ITEM_COUNT, itemsOf, listOf } from './layout.js'

// Shares of the mix: PATCHes often enough that slow GETs keep racing invalidations.
const MIX = [['item', 0.55], ['list', 0.25], ['patch', 0.20]]
const REQUEST_TIMEOUT = 10_000

/**
 * Resolves the counts once every loop has stopped: at `durationMs`, or early when `signal`
 * aborts. A request in flight then finishes (at most REQUEST_TIMEOUT later).
 */
export async function drive ({ ports, connections, durationMs, random, checker, signal }) {
  const agents = ports.map(() => new http.Agent({ keepAlive: true, maxSockets: connections }))
  const stats = {
    requests: { item: 0, list: 0, patch: 0 },
    cache: {},
    serverErrors: 0,
    errors: 0,
    examples: [],
    latencies: [],
    elapsedMs: 0,
  }
  const started = performance.now()
  const deadline = started + durationMs

  const note = (message) => {
    if (stats.examples.length < 5) stats.examples.push(message)
  }
  const fail = (message) => {
    stats.errors++
    note(message)
  }

  async function one () {
    const instance = Math.floor(random() * ports.length)
    const itemId = 1 + Math.floor(random() * ITEM_COUNT)
    const kind = pick(random())
    const listId = listOf(itemId)
    const path = kind === 'list' ? `/lists/${listId}` : kind === 'item' ? `/items/${itemId}` : `/items/${itemId}?listId=${listId}`
    const what = `${kind === 'patch' ? 'PATCH' : 'GET'} ${path}`
    // Taken before the request is handed to http: a PATCH answer read after this point may
    // have arrived after the GET left, so it must not raise the floor.
    const floors = kind === 'patch' ? undefined : checker.floors(kind === 'list' ? itemsOf(listId) : [itemId])
    stats.requests[kind]++
    const sent = performance.now()
    let res
    try {
      res = await request(ports[instance], agents[instance], kind === 'patch' ? 'PATCH' : 'GET', path)
    } catch (err) {
      fail(`${what} on instance ${instance}: ${err.message}`)
      return
    }
    stats.latencies.push(performance.now() - sent)
    if (res.status !== 200) {
      if (res.status >= 500) stats.serverErrors++
      else stats.errors++
      note(`${what} on instance ${instance}: status ${res.status} ${res.body.slice(0, 200)}`)
      return
    }
    const answer = readAnswer(kind, res.body, kind === 'list' ? listId : itemId)
    if (answer === undefined) {
      fail(`${what} on instance ${instance}: unexpected body ${res.body.slice(0, 200)}`)
      return
    }
    if (kind === 'patch') {
      checker.patched(itemId, answer.versions.get(itemId), instance)
      return
    }
    const cache = res.headers['x-cache']
    stats.cache[cache ?? 'none'] = (stats.cache[cache ?? 'none'] ?? 0) + 1
    checker.check({ what, instance, cache, filledBy: answer.filledBy, at: (sent - started) / 1000 }, floors, answer.versions)
  }

  async function loop () {
    while (performance.now() < deadline && !signal?.aborted) await one()
  }

  try {
    await Promise.all(Array.from({ length: connections }, loop))
  } finally {
    for (const agent of agents) agent.destroy()
  }
  stats.elapsedMs = performance.now() - started
  return stats
}

function pick (r) {
  for (const [kind, share] of MIX) {
    if (r < share) return kind
    r -= share
  }
  return MIX[MIX.length - 1][0]
}

/** `{ versions: item id -> version, filledBy }`, or undefined when not the expected shape. */
function readAnswer (kind, text, id) {
  let body
  try {
    body = JSON.parse(text)
  } catch {
    return undefined
  }
  if (body?.id !== id) return undefined
  const items = kind === 'list' ? body.items : [body]
  const expected = kind === 'list' ? itemsOf(id) : [id]
  if (!Array.isArray(items) || items.length !== expected.length) return undefined
  const versions = new Map(items.map((item) => [item?.id, item?.version]))
  return expected.every((itemId) => Number.isInteger(versions.get(itemId))) ? { versions, filledBy: body.filledBy } : undefined
}

// Resolves once the body has been read in full: only then does a PATCH count as arrived.
function request (port, agent, method, path) {
  return new Promise((resolve, reject) => {
    const headers = method === 'PATCH' ? { 'content-length': '0' } : {}
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers, timeout: REQUEST_TIMEOUT }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (chunk) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT} ms`)))
    req.on('error', reject)
    req.end()
  })
}
