import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyRequest } from 'fastify'
import type { ResponseEntry } from './codec.js'
import { UNAVAILABLE, type Engine } from './engine.js'
import { find, needsPrepare, prepareMiss, type LookupRoute } from './find.js'
import type { Flight, FlightResponse, Miss } from './request-state.js'
import type { Token } from './stores/store.js'
import { sameVariant } from './variants.js'

const LEASE = Buffer.from('lease')
/** How long a waiter waits for the leader before running the handler itself. */
const FLIGHT_TIMEOUT_MS = 10_000

/** In-process fills in progress, by key: concurrent misses of a key wait for one handler. */
export class Flights {
  readonly #byKey = new Map<string, Flight>()

  get (key: string): Flight | undefined {
    return this.#byKey.get(key)
  }

  lead (key: string, seq: number, token: Token | null): Flight {
    let settle!: (entry: FlightResponse | null) => void
    const done = new Promise<FlightResponse | null>((resolve) => { settle = resolve })
    const flight: Flight = { seq, token, done, settle }
    // A leader that never reaches onSend (hijacked reply, hung handler) must not hold waiters.
    const timer = setTimeout(() => flight.settle(null), FLIGHT_TIMEOUT_MS)
    timer.unref()
    flight.settle = (entry) => {
      clearTimeout(timer)
      if (this.#byKey.get(key) === flight) this.#byKey.delete(key)
      settle(entry)
    }
    this.#byKey.set(key, flight)
    return flight
  }
}

/**
 * Whether a miss may wait for a flight's response instead of running the handler. Never after an
 * invalidation of the key in this process since the flight started. On a shared store, only when
 * the miss saw the very token the leader prepared before its handler ran: a token changes with
 * every invalidation, so an equal one means no instance invalidated the key between the
 * leader's start and this lookup, and the leader's response is not older than this request.
 */
function joinable (engine: Engine, flight: Flight, miss: Miss): boolean {
  if (engine.changedSince(miss.root ?? miss.key, flight.seq, miss.tags)) return false
  if (!engine.guarded || flight.token === null) return true
  return miss.token !== null && miss.token !== undefined && flight.token.id !== undefined && flight.token.id === miss.token.id
}

/**
 * Coalescing: the first miss of a key leads a flight; concurrent misses wait for its response.
 * A GET that cannot join leads a new flight. HEAD requests join but never lead, since their
 * responses are not stored; nor does a miss whose response may not be stored.
 */
export async function join (route: LookupRoute, request: FastifyRequest, miss: Miss): Promise<FlightResponse | null> {
  const { engine, flights } = route
  const current = flights.get(miss.key)
  if (current !== undefined && joinable(engine, current, miss)) {
    const entry = await current.done
    return entry !== null && sameVariant(entry, request) ? entry : null
  }
  if (request.method !== 'GET' || miss.token === undefined) return null
  const flight = flights.lead(miss.key, miss.seq, miss.token)
  miss.flight = flight
  if (engine.opts.lease === false || route.store.local) return null
  const filled = await leased(route, request, miss)
  if (filled !== null) flight.settle(filled)
  return filled
}

/**
 * Across instances: take the key's lease, or wait (bounded) for the instance holding it to store
 * its response. Resolves that response, or null when this request must run the handler: it holds
 * the lease, the wait ran out, or the store failed (fail-open: run the handler).
 */
async function leased (route: LookupRoute, request: FastifyRequest, miss: Miss): Promise<ResponseEntry | null> {
  const { engine, store } = route
  const lease = engine.opts.lease as { ttl: number, wait: number, poll: number }
  const leaseKey = miss.key + '|lease'
  const k = miss.root ?? miss.key
  const take = async (): Promise<boolean> => {
    const taken = await engine.attempt('add', leaseKey, true, () => store.add(leaseKey, LEASE, Math.ceil(lease.ttl / 1000)))
    if (taken) miss.lease = leaseKey
    return taken
  }
  if (await take()) return null
  const deadline = Date.now() + lease.wait
  while (Date.now() < deadline) {
    await sleep(lease.poll)
    const found = await find(route, request, k, miss.tags)
    if (found === UNAVAILABLE) return null
    if (found.entry !== undefined) return found.entry
    if (await take()) {
      // The holder may have stored its response and released the lease between our read and
      // our add (another connection, so no ordering between them): look once more before
      // running the handler a second time.
      const again = await find(route, request, k, miss.tags)
      if (again === UNAVAILABLE) return null
      if (again.entry === undefined) {
        // The handler runs now: it fills with what this read saw, not what the first one did.
        miss.key = again.miss.key
        miss.seq = again.miss.seq
        miss.token = again.miss.token
        miss.variantSet = again.miss.variantSet
        if (needsPrepare(engine, miss) && !await prepareMiss(route, miss)) miss.token = undefined
        return null
      }
      if (miss.lease !== undefined) {
        miss.lease = undefined
        engine.attempt('delete', leaseKey, 0, () => store.delete([leaseKey])).catch(() => {})
      }
      return again.entry
    }
  }
  return null
}
