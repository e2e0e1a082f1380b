// What every benchmark server shares: the item route, the handler-call counter, the /__calls
// route the runner reads, plugin options from the environment, listen + ready line, and a
// graceful exit on SIGTERM (so that `node --cpu-prof` writes its profile).
//
// Environment (set by benchmarks/run.js):
//   REDIS_URL          redis://127.0.0.1:<port>  (variants using Redis)
//   MEMCACHED_SERVERS  127.0.0.1:<port>          (variants using Memcached)
//   KEY_PREFIX         plugin keyPrefix, one per process so variants never share entries
//   BENCH_COMPRESSION  '0' disables the plugin's compression (diagnostic runs)

import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import { payload } from '../payload.js'

/** Handler calls (origin work) since start; read through GET /__calls. */
export const calls = { count: 0 }

export function createApp () {
  // No logger: the raw route and every plugin variant run with the same (absent) logging.
  // Plugin warnings are not lost for the checks: errors, bypasses and fallbackActive are read
  // from fastify.cache.stats() through /__calls.
  return Fastify({ logger: false })
}

/** Plugin options shared by all plugin variants, plus the given ones. */
export function cacheOptions (options) {
  return {
    keyPrefix: process.env.KEY_PREFIX ?? 'bench',
    // A remote store that cannot be reached must make the run fail its checks (no hits), not
    // be silently replaced by the in-memory fallback.
    fallback: 'none',
    ...(process.env.BENCH_COMPRESSION === '0' ? { compression: { enabled: false } } : {}),
    // METRICS=1: Prometheus metrics on (the -metrics variants: what they cost a hit).
    ...(process.env.METRICS === '1' ? { metrics: {} } : {}),
    ...options,
  }
}

export function redisUrl () {
  const url = process.env.REDIS_URL
  if (!url) throw new Error('REDIS_URL is not set')
  return url
}

export function memcachedServers () {
  const servers = process.env.MEMCACHED_SERVERS
  if (!servers) throw new Error('MEMCACHED_SERVERS is not set')
  return servers
}

/** GET /items/:id returning payload(id); `config` is the route config (e.g. `{ cache }`). */
export function itemRoute (app, config) {
  app.get('/items/:id', config === undefined ? {} : { config }, async (request) => {
    calls.count++
    return payload(Number(request.params.id))
  })
}

/** GET /slow/:id: the same body after a 20 ms "origin" (a database call, say). */
export function slowRoute (app, config) {
  app.get('/slow/:id', config === undefined ? {} : { config }, async (request) => {
    calls.count++
    await sleep(20)
    return payload(Number(request.params.id))
  })
}

/** Adds /__calls, listens on a free loopback port, prints one JSON ready line on stdout. */
export async function serve (app) {
  app.get('/__calls', async () => {
    const stats = app.hasDecorator('cache') ? app.cache.stats() : null
    // cpu: µs of CPU this process has used (user + system), for the runner's CPU per request.
    const { user, system } = process.cpuUsage()
    return { calls: calls.count, stats, rss: process.memoryUsage().rss, cpu: user + system }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address()
  process.stdout.write(JSON.stringify({ ready: true, port, pid: process.pid }) + '\n')

  let closing = false
  const stop = () => {
    if (closing) return
    closing = true
    // Bounded: a close that hangs still ends the process (and writes a --cpu-prof profile).
    const force = setTimeout(() => process.exit(0), 3000)
    force.unref()
    app.close().finally(() => {
      process.stderr.write(JSON.stringify({ exit: true, calls: calls.count }) + '\n')
      process.exit(0)
    })
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  // The runner going away (its stdin pipe closes) ends the server too.
  process.stdin.on('end', stop)
  process.stdin.resume()
}

/**
 * A ceiling server: an onRequest hook that replies with the bytes `get` finds (no codec, no
 * fail-open, no statistics: the least a store hit has to do), and a handler that fills the key.
 * With SHARED_READS=1, concurrent lookups of one key share one in-flight `get` (the stretch
 * evidence: what the plugin does in its store reads).
 */
export async function ceilingServer ({ get, set, close }) {
  const prefix = (process.env.KEY_PREFIX ?? 'bench') + ':item:'
  const inflight = new Map()
  const read = process.env.SHARED_READS !== '1'
    ? get
    : (key) => {
        let pending = inflight.get(key)
        if (pending === undefined) {
          pending = get(key).finally(() => inflight.delete(key))
          inflight.set(key, pending)
        }
        return pending
      }
  const app = createApp()
  app.addHook('onClose', close)
  app.get('/items/:id', {
    onRequest: async (request, reply) => {
      const body = await read(prefix + request.params.id)
      if (body !== null) return reply.type('application/json; charset=utf-8').send(body)
    },
  }, async (request, reply) => {
    calls.count++
    const body = JSON.stringify(payload(Number(request.params.id)))
    await set(prefix + request.params.id, body)
    reply.type('application/json; charset=utf-8')
    return body
  })
  await serve(app)
}
