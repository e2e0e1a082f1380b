import { spawn, type ChildProcess } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { stopProcess } from './signals.js'

/**
 * A real memcached on a free loopback port, for tests that need real faults: pause() is SIGSTOP
 * (connections are still accepted by the kernel, nothing answers), kill() is SIGKILL, restart()
 * brings a fresh (empty) server back on the same port.
 */
export interface MemcachedServer {
  readonly host: string
  readonly port: number
  /** `127.0.0.1:port`, the form the `servers` option takes. */
  readonly address: string
  readonly pid: number | undefined
  /** SIGSTOP. */
  pause (): void
  /** SIGCONT. */
  resume (): void
  /** SIGKILL, waiting for the exit; idempotent. */
  kill (): Promise<void>
  /** Kill (if running) and start an empty server on the same port. */
  restart (): Promise<void>
  /** For teardown: the same as kill(). */
  stop (): Promise<void>
}

const BINARY = process.env.MEMCACHED_BIN ?? '/usr/bin/memcached'
const HOST = '127.0.0.1'
const running = new Set<ChildProcess>()

// A test process that exits normally (or throws) takes its servers with it; one that is killed
// outright cannot run this, which is what the per-server watchdog below is for.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

export interface MemcachedServerOptions {
  /** Extra memcached arguments, e.g. ['-F'] (flush_all disabled) or ['-S'] (SASL). */
  args?: string[]
  /** Extra environment, e.g. SASL_CONF_PATH. */
  env?: Record<string, string>
}

/** Start memcached on a free port (never 11211) and wait until it answers `version`. */
export async function startMemcached (options: MemcachedServerOptions = {}): Promise<MemcachedServer> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort()
    const child = await launch(port, options).catch(() => undefined)
    if (child !== undefined) return wrap(port, child, options)
  }
  throw new Error('memcached did not start on a free port after 5 attempts')
}

function wrap (port: number, first: ChildProcess, options: MemcachedServerOptions): MemcachedServer {
  let child: ChildProcess | undefined = first
  const server: MemcachedServer = {
    host: HOST,
    port,
    address: `${HOST}:${port}`,
    get pid () { return child?.pid },
    pause () { stopProcess(child?.pid) },
    resume () { child?.kill('SIGCONT') },
    async kill () {
      const current = child
      child = undefined
      if (current !== undefined) await terminate(current, 'SIGKILL')
    },
    async restart () {
      await server.kill()
      // The old listening socket can linger for a moment after SIGKILL; bounded retries.
      let lastError: unknown
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          child = await launch(port, options)
          return
        } catch (err) {
          lastError = err
          await sleep(100)
        }
      }
      throw new Error(`memcached did not restart on port ${port}`, { cause: lastError })
    },
    // SIGKILL: memcached persists nothing, and its graceful SIGTERM exit takes about a second.
    stop: () => server.kill(),
  }
  return server
}

async function launch (port: number, options: MemcachedServerOptions): Promise<ChildProcess> {
  const args = ['-l', HOST, '-p', String(port), '-U', '0', '-m', '64', '-c', '256', ...options.args ?? []]
  if (process.getuid?.() === 0) args.push('-u', 'root')
  const env = { ...process.env, ...options.env }
  const child = spawn(BINARY, args, { stdio: ['ignore', 'ignore', 'pipe'], env })
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  // Neither the process nor its stderr pipe may keep a finished test alive.
  child.unref()
  ;(child.stderr as unknown as { unref?: () => void } | null)?.unref?.()
  running.add(child)
  child.once('exit', () => running.delete(child))
  if (child.pid !== undefined) watchdog(child.pid)

  for (let attempt = 0; attempt < 100; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) break
    if (await answersVersion(port)) return child
    await sleep(50)
  }
  await terminate(child, 'SIGKILL')
  throw new Error(`memcached on port ${port} did not answer: ${stderr.trim()}`)
}

/**
 * Kills memcached when this test process is gone (even by SIGKILL, where no exit handler runs);
 * it ends by itself as soon as memcached has exited.
 */
function watchdog (pid: number): void {
  const script = `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${pid} 2>/dev/null; do sleep 0.5; done; ` +
    `kill -0 ${process.pid} 2>/dev/null || kill -9 ${pid} 2>/dev/null`
  const dog = spawn('/bin/sh', ['-c', script], { stdio: 'ignore', detached: true })
  dog.unref()
}

async function terminate (child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000)
  await exited
  clearTimeout(timer)
}

/**
 * One binary-protocol `version` (the text protocol is off when SASL is on); true when a response
 * arrives, false on refusal, error or silence for 500 ms (a stopped server).
 */
export function answersVersion (port: number, host = HOST): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host)
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), 500)
    const request = Buffer.alloc(24)
    request.writeUInt8(0x80, 0) // request magic
    request.writeUInt8(0x0b, 1) // VERSION
    socket.on('connect', () => socket.write(request))
    socket.on('data', (chunk: Buffer) => done(chunk.readUInt8(0) === 0x81))
    socket.on('error', () => done(false))
  })
}

/** The server's `stats` (text protocol), e.g. `curr_connections`, `curr_items`. */
export function memcachedStats (port: number, host = HOST): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, host)
    let reply = ''
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no stats from ${host}:${port}`)) }, 2000)
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write('stats\r\n'))
    socket.on('data', (chunk: string) => {
      reply += chunk
      if (!reply.endsWith('END\r\n')) return
      clearTimeout(timer)
      socket.destroy()
      resolve(Object.fromEntries(reply.split('\r\n').filter((l) => l.startsWith('STAT ')).map((l) => l.split(' ').slice(1, 3))))
    })
    socket.on('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

async function freePort (): Promise<number> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const probe = createServer()
      probe.once('error', reject)
      probe.listen(0, HOST, () => {
        const address = probe.address()
        const found = typeof address === 'object' && address !== null ? address.port : 0
        probe.close(() => resolve(found))
      })
    })
    if (port !== 0 && port !== 11211) return port
  }
  throw new Error('no free loopback port found')
}
