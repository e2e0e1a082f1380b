// The shared cache server of a soak: a redis-server or memcached of its own, on a free loopback
// port (never 6379 or 11211), that can be paused, killed and restarted on the same port.

import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { stop, track } from './processes.js'

const HOST = '127.0.0.1'
const RESERVED_PORTS = new Set([6379, 11211])

// The server runs under a shell that lives as long as its stdin pipe from the runner: when
// the pipe closes (the runner stops it, or dies even by SIGKILL) the shell kills the server.
// It prints the server's own pid, which pause/kill need (signalling the shell would not reach
// the server). One guard per server incarnation: a restart starts a new one.
const GUARD = '"$0" "$@" >&2 & pid=$!; echo "$pid"; cat > /dev/null; ' +
  'kill -CONT "$pid" 2> /dev/null; kill -KILL "$pid" 2> /dev/null; wait "$pid"'

const KINDS = {
  redis: {
    command: 'redis-server',
    args: (port, dir) => ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no',
      '--dir', dir, '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning'],
    probe: ['PING\r\n', '+PONG'],
    address: (port) => `redis://${HOST}:${port}`,
  },
  memcached: {
    command: process.env.MEMCACHED_BIN ?? 'memcached',
    args: (port) => ['-l', HOST, '-p', String(port), '-U', '0', '-m', '64', '-c', '1024',
      ...(process.getuid?.() === 0 ? ['-u', 'root'] : [])],
    probe: ['version\r\n', 'VERSION'],
    address: (port) => `${HOST}:${port}`,
  },
}

/**
 * Start the server. Resolves `{ kind, port, address, pid, pause, resume, kill, restart, stop }`;
 * `address` is what the plugin option takes (a Redis URL, or memcached `host:port`).
 */
export async function startStore (kind) {
  const spec = KINDS[kind]
  const probe = spawnSync(spec.command, ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined) throw new Error(`${spec.command} not found (${probe.error.code}): install it (Debian: apt-get install ${kind === 'redis' ? 'redis-server' : 'memcached'})`)
  const dir = mkdtempSync(join(tmpdir(), 'fsc-soak-'))
  // Also when the runner exits before it has a server to stop (Ctrl-C during start-up).
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  let current
  let port
  // A free port can be taken between the probe and the server's bind: try a few.
  for (let attempt = 1; current === undefined; attempt++) {
    port = await freePort()
    try {
      current = await launch(spec, port, dir)
    } catch (err) {
      if (attempt >= 3) throw err
    }
  }

  const server = {
    kind,
    port,
    address: spec.address(port),
    get pid () { return current?.pid },
    pause () { signal(current?.pid, 'SIGSTOP') },
    resume () { signal(current?.pid, 'SIGCONT') },
    async kill () {
      const guard = current?.guard
      current = undefined
      if (guard !== undefined) await stop(guard)
    },
    async restart () {
      await server.kill()
      // memcached's old listening socket can linger for a moment after the kill.
      let lastError
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          current = await launch(spec, port, dir)
          return
        } catch (err) {
          lastError = err
          await sleep(200)
        }
      }
      throw new Error(`${kind} did not restart on port ${port}`, { cause: lastError })
    },
    async stop () {
      await server.kill()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  return server
}

async function launch (spec, port, dir) {
  const guard = spawn('sh', ['-c', GUARD, spec.command, ...spec.args(port, dir)], { stdio: ['pipe', 'pipe', 'pipe'], detached: true })
  let pid
  // The shell cannot be trusted to clean up if it is SIGKILLed: kill the server directly.
  track(guard, () => { signal(pid, 'SIGKILL'); guard.stdin.end() })
  let stderr = ''
  guard.stderr.setEncoding('utf8').on('data', (chunk) => { stderr = (stderr + chunk).slice(-2000) })
  try {
    pid = await readPid(guard)
    await waitUntilAnswering(port, spec.probe, pid)
    return { guard, pid }
  } catch (err) {
    await stop(guard)
    throw new Error(`${spec.command} on port ${port}: ${err.message}${stderr ? `\n${stderr}` : ''}`)
  }
}

function readPid (guard) {
  return new Promise((resolve, reject) => {
    let out = ''
    const onData = (chunk) => {
      out += chunk
      if (!out.includes('\n')) return
      guard.stdout.off('data', onData)
      guard.stdout.resume()
      resolve(Number(out.trim()))
    }
    guard.stdout.setEncoding('utf8').on('data', onData)
    guard.once('exit', () => reject(new Error('the guard shell exited before starting the server')))
  })
}

/** Probe until the server answers; gives up early when the server process is gone. */
async function waitUntilAnswering (port, [command, expect], pid, ms = 10_000) {
  const deadline = Date.now() + ms
  let lastError
  while (Date.now() < deadline) {
    if (!alive(pid)) throw new Error('exited before answering')
    try {
      if ((await query(port, command)).includes(expect)) return
    } catch (err) {
      lastError = err
    }
    await sleep(50)
  }
  throw new Error(`did not answer ${JSON.stringify(command.trim())} within ${ms} ms: ${lastError?.message}`)
}

function query (port, command) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST)
    let data = ''
    socket.setTimeout(1000, () => socket.destroy(new Error('timeout')))
    socket.on('connect', () => socket.write(command))
    socket.on('data', (chunk) => {
      data += chunk
      if (data.includes('\n')) {
        socket.destroy()
        resolve(data)
      }
    })
    socket.on('error', reject)
  })
}

// An exited server stays a zombie until its guard reaps it, so kill(pid, 0) cannot tell: read
// its state. Without /proc (not Linux), assume it is alive and let the probe deadline decide.
function alive (pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat[stat.lastIndexOf(')') + 2] !== 'Z'
  } catch (err) {
    return err.code !== 'ENOENT'
  }
}

function signal (pid, name) {
  if (pid === undefined) return
  try { process.kill(pid, name) } catch {}
}

async function freePort () {
  for (let attempt = 0; attempt < 20; attempt++) {
    const probe = net.createServer()
    probe.listen(0, HOST)
    await once(probe, 'listening')
    const { port } = probe.address()
    probe.close()
    await once(probe, 'close')
    if (!RESERVED_PORTS.has(port)) return port
  }
  throw new Error('no free loopback port found')
}
