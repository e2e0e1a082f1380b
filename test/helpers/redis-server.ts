import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { stopProcess } from './signals.js'

/**
 * Real redis-server processes for tests: loopback only, free ports (never 6379), no
 * persistence, a temp dir each, and no process outliving the test file.
 */

/** What the helpers need from a tap test: registering cleanup that runs even on failure. */
export interface Teardown { teardown (fn: () => unknown): void }

export interface RedisServerOptions {
  /** Defaults to a free port; give one to start a server where another one was. */
  port?: number
  /** Extra redis-server arguments, e.g. ['--rename-command', 'KEYS', '']. */
  args?: string[]
  /** false: only reserve the port and dir; call start() later (a server "down at start-up"). */
  start?: boolean
}

export interface RedisServer {
  readonly port: number
  readonly url: string
  readonly dir: string
  readonly pid: number | undefined
  start (): Promise<void>
  /** SIGTERM, then SIGKILL if it does not exit within 5 s. Idempotent. */
  stop (): Promise<void>
  /** SIGSTOP: connections stay open (the kernel still accepts them) but nothing answers. */
  pause (): void
  /** SIGCONT. */
  resume (): void
  /** SIGKILL, waiting for the exit. */
  kill (): Promise<void>
  /** Kill (if running) and start again on the same port; the data is gone (no persistence). */
  restart (): Promise<void>
}

const HOST = '127.0.0.1'
const READY_TIMEOUT = 10_000
const STOP_TIMEOUT = 5_000

// Every redis-server we started and have not seen exit. Killed synchronously on 'exit', and a
// watchdog shell per server kills it when this process dies without running 'exit' handlers
// (tap's timeout SIGKILL, a crash), so no server outlives its test file.
const children = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of children) killQuietly(child.pid, 'SIGKILL')
})

function killQuietly (pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return
  try { process.kill(pid, signal) } catch {}
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => port === 6379 ? resolve(freePort()) : resolve(port))
    })
  })
}

/**
 * One RESP command over a fresh loopback connection, reply as raw text (enough for PING,
 * CLUSTER INFO, DBSIZE). Rejects on error or after `timeout` ms (a paused server).
 */
export async function rawCommand (port: number, args: string[], timeout = 1000): Promise<string> {
  const request = `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')
  return await new Promise((resolve, reject) => {
    const socket = connect(port, HOST)
    let data = ''
    const done = (err: Error | undefined, reply?: string): void => {
      clearTimeout(timer)
      socket.destroy()
      if (err !== undefined) reject(err)
      else resolve(reply ?? '')
    }
    const timer = setTimeout(() => done(new Error(`no reply from 127.0.0.1:${port} within ${timeout} ms`)), timeout)
    socket.setEncoding('utf8')
    socket.once('error', (err) => done(err))
    socket.on('data', (chunk: string) => {
      data += chunk
      const reply = completeReply(data)
      if (reply !== undefined) done(reply.startsWith('-') ? new Error(reply) : undefined, reply)
    })
    socket.write(request)
  })
}

function completeReply (data: string): string | undefined {
  const lineEnd = data.indexOf('\r\n')
  if (lineEnd < 0) return undefined
  if (data[0] !== '$') return data.slice(0, lineEnd)
  const length = Number(data.slice(1, lineEnd))
  if (length < 0) return ''
  const body = data.slice(lineEnd + 2)
  return Buffer.byteLength(body) >= length + 2 ? body.slice(0, -2) : undefined
}

/** Polls `check` every 50 ms until it resolves true; rejects after `timeout` ms. */
export async function waitFor (what: string, check: () => Promise<boolean> | boolean, timeout = READY_TIMEOUT): Promise<void> {
  const deadline = Date.now() + timeout
  let last: unknown
  while (Date.now() < deadline) {
    try {
      if (await check()) return
    } catch (err) {
      last = err
    }
    await sleep(50)
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`)
}

export async function startRedisServer (t: Teardown | undefined, options: RedisServerOptions = {}): Promise<RedisServer> {
  // A free port can be taken again between our probe and redis-server's bind: retry elsewhere.
  for (let attempt = 1; ; attempt++) {
    const server = new RedisProcess(options.port ?? await freePort(), options.args ?? [])
    t?.teardown(() => server.stop())
    if (options.start === false) return server
    try {
      await server.start()
      return server
    } catch (err) {
      await server.stop()
      if (options.port !== undefined || attempt >= 3 || !String(err).includes('Address already in use')) throw err
    }
  }
}

class RedisProcess implements RedisServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'fsc-redis-'))
  private child: ChildProcess | undefined
  private watchdog: ChildProcess | undefined
  private exited: Promise<void> = Promise.resolve()
  private output = ''
  private removed = false

  constructor (readonly port: number, private readonly args: string[]) {}

  get url (): string { return `redis://${HOST}:${this.port}` }
  get pid (): number | undefined { return this.child?.pid }

  async start (): Promise<void> {
    if (this.child !== undefined) throw new Error(`redis-server on port ${this.port} already running`)
    this.output = ''
    const child = spawn('redis-server', [
      '--port', String(this.port), '--bind', HOST, '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--daemonize', 'no', '--loglevel', 'warning', ...this.args,
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    children.add(child)
    this.exited = new Promise((resolve) => child.once('exit', () => {
      children.delete(child)
      if (this.child === child) this.child = undefined
      killQuietly(this.watchdog?.pid, 'SIGKILL')
      resolve()
    }))
    const collect = (chunk: Buffer): void => { this.output = (this.output + chunk.toString()).slice(-4000) }
    child.stdout?.on('data', collect)
    child.stderr?.on('data', collect)
    this.watchdog = spawnWatchdog(child.pid)
    try {
      await waitFor(`redis-server on port ${this.port} to answer PING`, async () => {
        if (this.child !== child) throw new Error(`redis-server exited early:\n${this.output}`)
        return (await rawCommand(this.port, ['PING'], 500)) === '+PONG'
      })
    } catch (err) {
      await this.kill()
      throw err
    }
  }

  pause (): void { stopProcess(this.child?.pid) }
  resume (): void { killQuietly(this.child?.pid, 'SIGCONT') }

  async kill (): Promise<void> {
    killQuietly(this.child?.pid, 'SIGKILL')
    await this.exited
  }

  async restart (): Promise<void> {
    await this.kill()
    await this.start()
  }

  async stop (): Promise<void> {
    const child = this.child
    if (child !== undefined) {
      killQuietly(child.pid, 'SIGCONT')
      killQuietly(child.pid, 'SIGTERM')
      const timer = setTimeout(() => killQuietly(child.pid, 'SIGKILL'), STOP_TIMEOUT)
      await this.exited
      clearTimeout(timer)
    }
    if (!this.removed) {
      this.removed = true
      rmSync(this.dir, { recursive: true, force: true })
    }
  }
}

function spawnWatchdog (pid: number | undefined): ChildProcess | undefined {
  if (pid === undefined) return undefined
  const script = `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${pid} 2>/dev/null; do sleep 1; done; kill -9 ${pid} 2>/dev/null`
  const watchdog = spawn('sh', ['-c', script], { stdio: 'ignore', detached: true })
  watchdog.unref()
  return watchdog
}

export interface RedisCluster {
  readonly nodes: RedisServer[]
  /** Startup nodes for `new Cluster(...)`. */
  readonly startupNodes: Array<{ host: string, port: number }>
  stop (): Promise<void>
}

/** `size` masters (no replicas) on loopback, all slots assigned, cluster_state:ok everywhere. */
export async function startRedisCluster (t: Teardown | undefined, size = 3): Promise<RedisCluster> {
  const nodes: RedisServer[] = []
  const stop = async (): Promise<void> => { await Promise.all(nodes.map((node) => node.stop())) }
  t?.teardown(stop)
  try {
    for (let i = 0; i < size; i++) {
      // The bus port defaults to port + 10000, which may be taken or out of range: pick one.
      const busPort = await freePort()
      const node = await startRedisServer(undefined, {
        start: false,
        args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(busPort), '--cluster-node-timeout', '5000'],
      })
      nodes.push(node)
      await node.start()
    }
    const create = spawnSync('redis-cli', [
      '--cluster', 'create', ...nodes.map((node) => `${HOST}:${node.port}`), '--cluster-yes',
    ], { encoding: 'utf8', timeout: 30_000 })
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed:\n${create.stdout}\n${create.stderr}`)
    await waitFor('cluster_state:ok on every node', async () => {
      const infos = await Promise.all(nodes.map((node) => rawCommand(node.port, ['CLUSTER', 'INFO'])))
      return infos.every((info) => info.includes('cluster_state:ok'))
    }, 30_000)
  } catch (err) {
    await stop()
    throw err
  }
  return { nodes, startupNodes: nodes.map((node) => ({ host: HOST, port: node.port })), stop }
}
