// Memory footprint: 100,000 responses of ~1 KB (payload(id), 1,037-1,070 bytes of JSON) cached
// through a route into the memory store bounded by `memory: { maxBytes: 50 MiB }` (maxEntries
// raised so that the byte bound is the one that bites). Checks:
//   - the store stays under its bound: the entries still cached times the bytes one entry is
//     accounted for <= maxBytes; and the same fill straight into the MemoryStore class, whose own
//     `bytes` is read after every insert, never goes past it;
//   - the entries kept are the most recent ones (LRU), and the newest is served as a HIT.
// Process RSS, heap and external memory are reported before and after (after a full GC): what the
// bound means for the process.
//
// The requests go over loopback HTTP to the server in this same process (not app.inject(): in
// Fastify 5.12 / light-my-request 6.8 every inject retains ~9 KB of heap, which would drown
// the store's own footprint).
//
//   node --expose-gc benchmarks/footprint.js [--compression on|off]    (prints one JSON line)

import http from 'node:http'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import serverCache from 'fastify-server-cache'
import { payload } from './payload.js'

const ENTRIES = 100_000
const MAX_BYTES = 50 * 1024 * 1024
const MAX_ENTRIES = 1_000_000
const CONCURRENCY = 32

const { values: args } = parseArgs({ options: { compression: { type: 'string', default: 'on' } } })
const compression = args.compression !== 'off'

function gc () {
  if (typeof globalThis.gc === 'function') {
    globalThis.gc()
    globalThis.gc()
  }
}

const app = Fastify({ logger: false })
await app.register(serverCache, {
  backend: 'memory',
  memory: { maxEntries: MAX_ENTRIES, maxBytes: MAX_BYTES },
  ...(compression ? {} : { compression: { enabled: false } }),
})
let handlerCalls = 0
app.get('/items/:id', { config: { cache: { keyPrefix: 'item' } } }, async (request) => {
  handlerCalls++
  return payload(Number(request.params.id))
})
await app.listen({ host: '127.0.0.1', port: 0 })
const { port } = app.server.address()
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY })

function get (path) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, cache: res.headers['x-cache'], body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    }).on('error', reject)
  })
}

const problems = []
gc()
const before = process.memoryUsage()
const started = Date.now()
let next = 0
await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
  while (next < ENTRIES) {
    const id = next++
    const res = await get(`/items/${id}`)
    if ((res.status !== 200 || res.cache !== 'MISS') && problems.length < 5) problems.push(`footprint: /items/${id} answered ${res.status} x-cache ${res.cache}`)
  }
}))
const fillMs = Date.now() - started
agent.destroy()
gc()
const after = process.memoryUsage()

// Which entries are still cached, and what they are accounted for. exists() does not reorder
// the LRU; the fill is over anyway.
const accounting = await entryAccounting()
let kept = 0
let oldestKept = -1
let storedBytes = 0
for (let id = 0; id < ENTRIES; id++) {
  if (await app.cache.exists(`item:${id}`)) {
    kept++
    storedBytes += accounting.bytes(id)
    if (oldestKept === -1) oldestKept = id
  }
}
const newest = await get(`/items/${ENTRIES - 1}`)
if (newest.cache !== 'HIT' || newest.body !== JSON.stringify(payload(ENTRIES - 1))) problems.push('footprint: the newest entry is not served from the cache')
const stats = app.cache.stats()
await app.close()

if (storedBytes > MAX_BYTES) problems.push(`footprint: ${kept} entries accounted ${storedBytes} B, over maxBytes ${MAX_BYTES}`)
if (kept === ENTRIES) problems.push('footprint: nothing was evicted: the bound was never reached')
if (kept > 0 && oldestKept !== ENTRIES - kept) problems.push(`footprint: the entries kept are not the most recent ${kept} (oldest kept: id ${oldestKept})`)
if (stats.sets !== ENTRIES) problems.push(`footprint: ${stats.sets} entries stored for ${ENTRIES} misses`)

const direct = await directStore()
if (direct.peakBytes > MAX_BYTES) problems.push(`footprint: MemoryStore accounted ${direct.peakBytes} B at its peak, over maxBytes ${MAX_BYTES}`)

process.stdout.write(JSON.stringify({
  compression,
  inserted: ENTRIES,
  bodyBytes: [Buffer.byteLength(JSON.stringify(payload(0))), Buffer.byteLength(JSON.stringify(payload(ENTRIES - 1)))],
  maxBytes: MAX_BYTES,
  maxEntries: MAX_ENTRIES,
  handlerCalls,
  entriesKept: kept,
  oldestKept,
  entryBytes: Math.round(storedBytes / kept),
  entryBytesSource: accounting.source,
  storedBytes,
  withinBound: storedBytes <= MAX_BYTES && !(direct.peakBytes > MAX_BYTES),
  direct,
  rssBefore: before.rss,
  rssAfter: after.rss,
  heapBefore: before.heapUsed,
  heapAfter: after.heapUsed,
  externalBefore: before.external,
  externalAfter: after.external,
  fillMs,
  problems,
}) + '\n')

/**
 * What the cached response of an id counts for in the memory store: its encoded entry (the
 * plugin's own codec, from the built package: same headers, same-length etag and timestamp), plus
 * the key at 2 bytes per UTF-16 unit, plus ENTRY_OVERHEAD_BYTES, as lib/stores/memory.ts accounts
 * it. An estimate when the build's layout changed.
 */
async function entryAccounting () {
  const keyBytes = (id) => `fastify-cache:item:${id}`.length * 2
  const body = (id) => Buffer.from(JSON.stringify(payload(id)))
  try {
    const { Codec } = await import(new URL('../dist/esm/lib/codec.js', import.meta.url))
    const { ENTRY_OVERHEAD_BYTES } = await import(new URL('../dist/esm/lib/stores/memory.js', import.meta.url))
    const codec = new Codec({ enabled: compression, threshold: 1024 })
    return {
      source: 'codec + memory store accounting',
      bytes: (id) => codec.encodeResponse({
        status: 200,
        headers: { 'content-type': 'application/json; charset=utf-8' },
        storedAt: Date.now(),
        etag: '"' + 'x'.repeat(27) + '"',
        vary: null,
        body: body(id),
      }, false).length + keyBytes(id) + ENTRY_OVERHEAD_BYTES, // the memory store never compresses
    }
  } catch {
    return { source: 'estimate', bytes: (id) => body(id).length + 160 + keyBytes(id) + 608 }
  }
}

/** The same number of ~1 KB values straight into the store class, reading its own `bytes`. */
async function directStore () {
  try {
    const { MemoryStore } = await import(new URL('../dist/esm/lib/stores/memory.js', import.meta.url))
    const store = new MemoryStore({ maxEntries: MAX_ENTRIES, maxBytes: MAX_BYTES })
    let peakBytes = 0
    for (let id = 0; id < ENTRIES; id++) {
      await store.set(`fastify-cache:item:${id}`, Buffer.from(JSON.stringify(payload(id))), 3600)
      if (store.bytes > peakBytes) peakBytes = store.bytes
    }
    const result = { size: store.size, bytes: store.bytes, peakBytes }
    await store.close()
    return result
  } catch (err) {
    return { error: err.message }
  }
}
