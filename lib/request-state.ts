import type { Token } from './stores/store.js'

/** Request-scoped state, on a symbol so the request object's shape stays stable. */
export const kState = Symbol('fastify-server-cache.state')
export const HIT = 1
export const BYPASS = 2

/** A GET that missed: where its response goes, and what it must check before storing it. */
export interface Miss {
  /**
   * Full key the response is stored under. For `vary` routes: the variant key, or
   * `root|?|variant` while the key has no variant set yet (the fill creates one).
   */
  key: string
  /** engine.invalidations when the lookup ran. */
  seq: number
  /** The tags the response will carry (filled in from the request). */
  tags: readonly string[]
  /**
   * What the fill writes with: the prepared token of `key`, or of `root` while the variant set
   * is unknown (the set's marker is then what must not outlive an invalidation). null: a local
   * store; undefined: an invalidation overtook the lookup, the response is not stored.
   */
  token: Token | null | undefined
  /** `vary` routes: the key's variant-set root, the set once known, the variant digest. */
  root?: string
  variantSet?: string
  variant?: string
  /** An expired entry within the route's staleIfError window: it answers a 5xx of the handler. */
  stale?: import('./codec.js').ResponseEntry
  /** The payload as the route's first onSend hook saw it, and whether it was already encoded then. */
  payload?: unknown
  encoded?: boolean
  /** Set when this request leads a coalesced fill that others wait on. */
  flight?: Flight
  /** The cross-instance lease this request holds, released once its response is settled. */
  lease?: string
}
export type RequestState = Miss | typeof HIT | typeof BYPASS | null

/** What a fill hands its waiters: the stored entry, or an error response that was not stored. */
export type FlightResponse = import('./codec.js').ResponseEntry & { notStored?: true }

/** One in-process fill of a key: concurrent misses wait for its response instead of running. */
export interface Flight {
  seq: number
  /** The leader's prepared token: only lookups that saw the same one may wait for its response. */
  token: Token | null
  /**
   * Resolves the stored entry, the leader's error response (not stored), or null when its
   * response may not be shared (set-cookie, private, a stream...): each waiter then runs.
   */
  done: Promise<FlightResponse | null>
  settle: (entry: FlightResponse | null) => void
}

/** The key whose token a miss holds (see Miss.token). */
export function tokenKey (miss: Miss): string {
  return miss.root !== undefined && miss.variantSet === undefined ? miss.root : miss.key
}

declare module 'fastify' {
  interface FastifyRequest {
    [kState]: RequestState
  }
}
