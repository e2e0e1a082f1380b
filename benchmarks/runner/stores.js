// The redis-server and memcached the store variants use: on free loopback ports, for this run only.

import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { track } from './children.js'

const RESERVED_PORTS = new Set([6379, 11211])

export async function startStores (variants, tmp) {
  const stores = {}
  if (variants.some((v) => v.needs === 'redis')) stores.redis = await startRedis(tmp)
  if (variants.some((v) => v.needs === 'memcached')) stores.memcached = await startMemcached()
  return stores
}

export function storeEnv (stores) {
  return {
    ...(stores.redis ? { REDIS_URL: stores.redis.url } : {}),
    ...(stores.memcached ? { MEMCACHED_SERVERS: stores.memcached.servers } : {}),
  }
}

async function startRedis (dir) {
  const port = await freePort()
  const child = spawnGuarded('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning',
  ], 'redis-server')
  await waitForTcp(port, 'PING\r\n', '+PONG')
  return { kind: 'redis', child, port, url: `redis://127.0.0.1:${port}` }
}

async function startMemcached () {
  const port = await freePort()
  const root = typeof process.getuid === 'function' && process.getuid() === 0
  const child = spawnGuarded('memcached', [
    '-p', String(port), '-l', '127.0.0.1', '-U', '0', '-m', '256', '-c', '1024',
    ...(root ? ['-u', 'root'] : []),
  ], 'memcached')
  await waitForTcp(port, 'version\r\n', 'VERSION')
  return { kind: 'memcached', child, port, servers: `127.0.0.1:${port}` }
}

/**
 * A store server that lives exactly as long as a pipe from this process: however the runner
 * ends (error, Ctrl-C, even SIGKILL), the pipe closes, `cat` returns and the server is killed.
 */
function spawnGuarded (command, args, label) {
  const probe = spawnSync(command, ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined) throw new Error(`${command} not found (${probe.error.code}): install it (Debian: apt-get install ${label})`)
  const script = '"$0" "$@" & pid=$!; cat > /dev/null; kill $pid 2> /dev/null; wait $pid'
  const child = track(spawn('sh', ['-c', script, command, ...args], { stdio: ['pipe', 'ignore', 'inherit'] }), label)
  child.guarded = true
  return child
}

async function freePort () {
  for (let attempt = 0; attempt < 20; attempt++) {
    const server = net.createServer()
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address()
    server.close()
    await once(server, 'close')
    if (!RESERVED_PORTS.has(port)) return port
  }
  throw new Error('no free port found')
}

/** Send `command` to 127.0.0.1:port until the reply contains `expect` (bounded). */
async function waitForTcp (port, command, expect, ms = 10_000) {
  const deadline = Date.now() + ms
  let lastError
  while (Date.now() < deadline) {
    try {
      const reply = await query(port, command, (data) => data.includes('\n'))
      if (reply.includes(expect)) return
      lastError = new Error(`unexpected reply ${JSON.stringify(reply)}`)
    } catch (err) {
      lastError = err
    }
    await sleep(100)
  }
  throw new Error(`127.0.0.1:${port} did not answer ${JSON.stringify(command.trim())}: ${lastError?.message}`)
}

/** One command on a fresh connection; resolves the reply once `complete(reply)` says it is whole. */
function query (port, command, complete) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let data = ''
    socket.setTimeout(1000, () => socket.destroy(new Error('timeout')))
    socket.on('connect', () => socket.write(command))
    socket.on('data', (chunk) => {
      data += chunk
      if (complete(data)) {
        socket.end()
        resolve(data)
      }
    })
    socket.on('error', reject)
  })
}

/**
 * µs of CPU the store server has used since it started, as it reports it (Redis `INFO cpu`,
 * memcached `stats` rusage): both print microseconds, finer than /proc's clock ticks.
 */
export async function storeCpu (store) {
  const seconds = (text, user, sys) => Number(new RegExp(`${user}[: ](\\d+\\.\\d+)`).exec(text)?.[1] ?? NaN) + Number(new RegExp(`${sys}[: ](\\d+\\.\\d+)`).exec(text)?.[1] ?? NaN)
  if (store.kind === 'redis') {
    const info = await query(store.port, 'INFO cpu\r\n', (data) => {
      const header = /^\$(\d+)\r\n/.exec(data)
      return header !== null && Buffer.byteLength(data) >= header[0].length + Number(header[1]) + 2
    })
    return Math.round(seconds(info, 'used_cpu_user', 'used_cpu_sys') * 1e6)
  }
  const stats = await query(store.port, 'stats\r\n', (data) => data.includes('END\r\n'))
  return Math.round(seconds(stats, 'STAT rusage_user', 'STAT rusage_system') * 1e6)
}

/**
 * Reads the store has served since it started, as the server counts them: Redis GET and MGET
 * calls (INFO commandstats; a plugin lookup is one MGET of the entry and its guard, a
 * hand-written one a GET), memcached keys fetched (`cmd_get`: a plugin lookup fetches its namespace
 * versions and the entry). Over a sample, the difference per request served is the honest
 * per-request cost of a variant that shares in-flight reads.
 */
export async function storeReads (store) {
  if (store.kind === 'redis') {
    const info = await query(store.port, 'INFO commandstats\r\n', (data) => {
      const header = /^\$(\d+)\r\n/.exec(data)
      return header !== null && Buffer.byteLength(data) >= header[0].length + Number(header[1]) + 2
    })
    const calls = (command) => Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0)
    return calls('get') + calls('mget')
  }
  const stats = await query(store.port, 'stats\r\n', (data) => data.includes('END\r\n'))
  return Number(/STAT cmd_get (\d+)/.exec(stats)?.[1] ?? NaN)
}
