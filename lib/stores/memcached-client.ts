import type { Socket } from 'node:net'
import memjs from 'memjs'
import type { Client, Response, Server } from 'memjs'
import { CacheConfigurationError } from '../errors.js'
import { batchWrites } from './batch-writes.js'
import { parseResponsesOf } from './memcached-responses.js'
import type { MemcachedOptions } from '../schemas.js'
import type { StoreContext } from './store.js'

// Binary protocol opcodes and statuses used by the store. memjs 1.3 hides CAS and flags and
// retries with delays, so requests are built here and sent through `client.perform`, which keeps
// memjs's sharding (hash of the key over the server list) and connection handling.
export const Op = { get: 0x00, set: 0x01, add: 0x02, replace: 0x03, delete: 0x04, version: 0x0b, touch: 0x1c } as const
export const Status = { ok: 0x00, notFound: 0x01, exists: 0x02, notStored: 0x05 } as const

export interface MemcachedConnection {
  client: Client
  /** Whether we created the client (and so may close it). */
  owned: boolean
  /** ms; a request not answered within it rejects and resets that server's connection. */
  timeout: number
}

/**
 * The one place a memjs client is made. No failover: moving a key to another server would also
 * move namespace versions, and an old version reappearing with its server would resurrect
 * cleared entries. One try per request: the caller (fail-open) decides what a failure means.
 */
export function buildConnection (options: MemcachedOptions | undefined, ctx: StoreContext): MemcachedConnection {
  const timeout = options?.timeout ?? Math.max(2 * ctx.operationTimeout, 100)
  if (options?.client !== undefined) return { client: options.client, owned: false, timeout }

  // memjs's own timers are only a backstop behind the per-request deadline (see request()).
  const seconds = (2 * timeout) / 1000
  const serverOptions = {
    timeout: seconds,
    conntimeout: seconds,
    keepAlive: true,
    keepAliveDelay: 30,
    username: options?.username,
    password: options?.password,
  }
  const servers = parseServers(options?.servers ?? 'localhost:11211').map(({ host, port, username, password }) => {
    const server = new memjs.Server(host, port, username, password, serverOptions)
    parseResponsesOf(server)
    return server
  })
  const client = new memjs.Client(servers, {
    retries: 1,
    retry_delay: 0,
    failover: false,
    expires: 0,
    logger: { log: (...args: unknown[]) => ctx.log.debug({ memjs: args.map(String).join(' ') }, 'memjs') },
  })
  return { client, owned: true, timeout }
}

interface ServerAddress { host: string, port: number, username?: string, password?: string }

/** `[user:pass@]host[:port]`, comma separated or as an array; IPv6 hosts in brackets. */
export function parseServers (servers: string | readonly string[]): ServerAddress[] {
  const list = (typeof servers === 'string' ? servers.split(',') : servers).map((s) => s.trim())
  if (list.length === 0 || list.some((s) => s === '')) {
    throw new CacheConfigurationError(`memcached.servers: expected 'host:port,host:port', got '${String(servers)}'`)
  }
  return list.map((entry) => {
    const at = entry.lastIndexOf('@')
    const credentials = at === -1 ? undefined : entry.slice(0, at)
    const address = entry.slice(at + 1)
    const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(address)
    const port = Number(match?.[3] ?? 11211)
    if (match === null || port < 1 || port > 65535) {
      throw new CacheConfigurationError(`memcached.servers: '${entry}' is not host[:port]`)
    }
    const colon = credentials?.indexOf(':') ?? -1
    return {
      host: match[1] ?? match[2] ?? '',
      port,
      username: credentials === undefined ? undefined : decodeURIComponent(colon === -1 ? credentials : credentials.slice(0, colon)),
      password: credentials === undefined || colon === -1 ? undefined : decodeURIComponent(credentials.slice(colon + 1)),
    }
  })
}

export interface RequestParts {
  extras?: Buffer
  value?: Buffer
  cas?: Buffer
}

/**
 * One request to the server owning `key`. Rejects on an error or after `timeout` ms. memjs has a
 * timeout of its own, but it is a socket *idle* timer: under steady traffic to a stopped server
 * every write re-arms it and requests wait forever. When ours fires, the server's connection is
 * reset as memjs itself would (every request pending on it fails; the next one reconnects).
 */
export function request (conn: MemcachedConnection, opcode: number, key: string, parts: RequestParts = {}): Promise<Response> {
  const { client } = conn
  const seq = nextOpaque(client)
  const buffer = requestBuffer(opcode, key, parts.extras, parts.value, seq)
  parts.cas?.copy(buffer, 16)
  const server = client.server(key)
  batchWrites((server as (Server & { _socket?: Socket }) | null | undefined)?._socket)
  return withDeadline(conn, server, conn.timeout, (done) => client.perform(key, buffer, seq, done))
}

/** `version` on one given server: whether that server answers. */
export function serverVersion (conn: MemcachedConnection, server: Server, timeout = conn.timeout): Promise<Response> {
  const seq = nextOpaque(conn.client)
  const buffer = requestBuffer(Op.version, '', undefined, undefined, seq)
  return withDeadline(conn, server, timeout, (done) => {
    server.onResponse(seq, (response) => done(null, response))
    server.onError(seq, (err) => done(err))
    server.write(buffer)
  })
}

/**
 * The next request number, kept within the protocol's unsigned 32 bits. memjs's own incrSeq
 * wraps with `&= 0xffffffff`, which turns the number negative past 2^31: its request builder
 * then throws (out of range) and no request of the process reaches memcached again for the
 * next 2^31 numbers. Stored on the client, as memjs pairs responses with callbacks by it.
 */
function nextOpaque (client: Client): number {
  const numbered = client as Client & { seq: number }
  numbered.seq = ((numbered.seq >>> 0) + 1) >>> 0
  return numbered.seq
}

/**
 * A binary-protocol request: the 24-byte header (magic, opcode, key and extras lengths, body
 * length, opaque; data type, vbucket and CAS zero), then extras, key and value. One pooled
 * allocation; memjs's builder makes five and zero-fills twice, for every request.
 */
export function requestBuffer (opcode: number, key: string, extras: Buffer | undefined, value: Buffer | undefined, opaque: number): Buffer {
  const keyLength = Buffer.byteLength(key)
  const extrasLength = extras?.length ?? 0
  const bodyLength = extrasLength + keyLength + (value?.length ?? 0)
  const buffer = Buffer.allocUnsafe(24 + bodyLength)
  buffer[0] = 0x80
  buffer[1] = opcode
  buffer.writeUInt16BE(keyLength, 2)
  buffer[4] = extrasLength
  buffer[5] = 0
  buffer.writeUInt16BE(0, 6)
  buffer.writeUInt32BE(bodyLength, 8)
  buffer.writeUInt32BE(opaque, 12)
  buffer.fill(0, 16, 24)
  extras?.copy(buffer, 24)
  buffer.write(key, 24 + extrasLength, keyLength, 'utf8')
  value?.copy(buffer, 24 + extrasLength + keyLength)
  return buffer
}

type Done = (err: unknown, response?: Response) => void

function withDeadline (conn: MemcachedConnection, server: Server | undefined | null, timeout: number, send: (done: Done) => void): Promise<Response> {
  return new Promise((resolve, reject) => {
    let settled = false
    const finish: Done = (err, response) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err !== null && err !== undefined) reject(asError(err))
      else if (response === undefined) reject(new Error('memcached: empty response'))
      else resolve(response)
    }
    const timer = setTimeout(() => {
      const err = new Error(`memcached ${server === undefined || server === null ? '' : `${server.host}:${server.port} `}did not answer within ${timeout} ms`)
      finish(err)
      if (server !== undefined && server !== null) reset(server, err)
    }, timeout)
    try {
      send(finish)
    } catch (err) {
      finish(err)
    }
  })
}

/**
 * Drop a server's connection and fail what is pending on it, as memjs's own timeout does, but
 * without its race: memjs's `close` listener clears `server._socket` whenever the old socket
 * finally closes, by which time a new request may have opened a fresh socket, which would then
 * be orphaned (never used, never closed).
 */
function reset (server: Server, err: Error): void {
  (server as Server & { _socket?: Socket })._socket?.removeAllListeners('close')
  server.error(err)
}

function asError (err: unknown): Error {
  // memjs reports a failed SASL authentication as a bare string.
  return err instanceof Error ? err : new Error(`memcached: ${String(err)}`)
}
