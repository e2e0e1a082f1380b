import { randomBytes } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { Engine, ManagedStore } from './engine.js'

/** A refresh's response, as inject gave it. */
export interface Refreshed {
  statusCode: number
  headers: Record<string, string | string[] | number | undefined>
  body: Buffer
}

/** The header that marks the plugin's own refresh requests (with a per-process secret). */
export const REFRESH_HEADER = 'x-fastify-server-cache-refresh'
const MARK = Buffer.from('refresh')
/**
 * Request headers a refresh does not repeat: the connection's own, and conditional or partial
 * requests (a refresh needs the whole response to store, not a 304 or a range).
 */
const NOT_FORWARDED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'te', 'upgrade', 'expect',
  'if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range'])
/** Seconds a refresh holds its key across instances (longer refreshes may overlap). */
const REFRESH_HOLD_SECONDS = 10

/**
 * staleWhileRevalidate: one background refresh per key. It runs the route as the request that
 * found the entry stale would have (same URL, so the same params and query; the same headers and
 * client address), through `inject`, so that the app's hooks apply to it as to any request
 * (authentication sees the original credentials, rate limits count the original client). Its lookup skips what is stored and its
 * fill writes with a token like any miss, so an invalidation that overtakes it wins. One per key
 * in this process; across instances, one per key as long as `add` of its marker succeeds.
 */
export class Refresher {
  readonly #secret = randomBytes(16).toString('hex')
  readonly #running = new Map<string, Promise<Refreshed | undefined>>()
  readonly #engine: Engine
  readonly #store: ManagedStore

  constructor (engine: Engine, store: ManagedStore) {
    this.#engine = engine
    this.#store = store
  }

  /** Whether the request is one of ours (the secret cannot be guessed by a client). */
  isRefresh (request: FastifyRequest): boolean {
    return request.headers[REFRESH_HEADER] === this.#secret
  }

  /**
   * The key's refresh: the one running in this process, or a new one. Resolves its response, or
   * undefined when another instance refreshes the key or the refresh could not run (logged).
   */
  refresh (request: FastifyRequest, key: string): Promise<Refreshed | undefined> {
    let running = this.#running.get(key)
    if (running === undefined) {
      running = this.#run(request, key)
        .catch((err) => {
          request.log.warn({ err, key }, `Cache refresh failed: ${(err as Error).message}`)
          return undefined
        })
        .finally(() => this.#running.delete(key))
      this.#running.set(key, running)
    }
    return running
  }

  async #run (request: FastifyRequest, key: string): Promise<Refreshed | undefined> {
    const engine = this.#engine
    const store = this.#store
    const mark = key + '|refresh'
    if (!store.local) {
      const taken = await engine.attempt('add', mark, false, () => store.add(mark, MARK, REFRESH_HOLD_SECONDS))
      if (!taken) return undefined
    }
    const headers: Record<string, string | string[]> = {}
    for (const [name, value] of Object.entries(request.headers)) {
      if (value !== undefined && !NOT_FORWARDED.has(name)) headers[name] = value
    }
    headers[REFRESH_HEADER] = this.#secret
    try {
      const response = await request.server.inject({ method: 'GET', url: request.url, headers, remoteAddress: request.ip })
      return { statusCode: response.statusCode, headers: response.headers, body: response.rawPayload }
    } finally {
      if (!store.local) await engine.attempt('delete', mark, 0, () => store.delete([mark]))
    }
  }
}
