import { BackendUnavailableError, CacheError } from '../errors.js'
import { MemoryStore } from './memory.js'
import type { Read, Store, StoreContext, Token } from './store.js'

/** Consecutive failures (errors or timeouts) that open the circuit. */
const FAILURE_THRESHOLD = 3
/** Default cool-down of the open circuit, and the interval of start-up reconnection attempts. */
const DEFAULT_RETRY_INTERVAL = 1000
/** ms between recovery attempts while invalidations missed during an outage wait for replay. */
const PENDING_RETRY_INTERVAL = 100
/** Recorded invalidations kept (a `delete` weighs its number of keys) before collapsing. */
const MAX_PENDING = 1000
/** A replayed SCAN over a large keyspace legitimately takes longer than operationTimeout. */
const MIN_REPLAY_TIMEOUT = 10_000

export interface FailoverContext extends StoreContext {
  fallback: 'memory' | 'none'
  memory: { maxEntries: number, maxBytes: number }
  /** ms between recovery attempts (the circuit's cool-down); default 1000. */
  retryInterval?: number
  /** Called after each operation on the server (metrics): its duration, and whether it failed. */
  observe?: (operation: string, seconds: number, failed: boolean) => void
}

type Invalidation =
  | { op: 'delete', keys: readonly string[] }
  | { op: 'deletePattern', pattern: string }
  | { op: 'clear', prefix: string }
  | { op: 'invalidateTags', tags: readonly string[] }

/**
 * Fail-open around a remote store (Redis, Memcached): every operation bounded by
 * operationTimeout, a circuit breaker, the start-up fallback, background recovery, and the
 * replay of invalidations the server missed.
 *
 * States: `startup` (connect() failed: the fallback memory store serves, or with fallback
 * 'none' everything rejects), `open` (after FAILURE_THRESHOLD consecutive failures at run
 * time: everything rejects at once instead of waiting for the timeout), or healthy. Both
 * unhealthy states end the same way: a timer probes the server every retryInterval (connect()
 * after a start-up failure, PING otherwise: one probe per cool-down, the half-open state),
 * replays the missed invalidations, and only then switches back.
 *
 * Missed invalidations are replayed rather than the whole namespace flushed on recovery:
 * entries nobody invalidated are still valid, and one timeout on a busy server must not turn
 * into a cold cache plus a SCAN of the whole keyspace. Deletions commute, so the recorded list
 * replayed in any order after the outage leaves exactly what in-order execution would have.
 * Until the list is empty, reads and writes reject (the layer above bypasses the cache), so a
 * key invalidated during the outage is never served again. Past MAX_PENDING the list collapses
 * into one "clear everything under keyPrefix", which is the flush, only when it is the cheaper
 * thing to remember.
 */
export function createFailoverStore (primary: Store, ctx: FailoverContext): Store & { readonly fallbackActive: boolean, readonly breakerOpen: boolean, readonly fallbackStore: MemoryStore | undefined } {
  const kind = primary.kind
  const { log, operationTimeout } = ctx
  const retryInterval = ctx.retryInterval ?? DEFAULT_RETRY_INTERVAL
  const replayTimeout = Math.max(operationTimeout * 10, MIN_REPLAY_TIMEOUT)
  const clearAll: Invalidation & { op: 'clear' } = { op: 'clear', prefix: `${ctx.keyPrefix}:` }

  let startup = false
  let open = false
  let failures = 0
  let lastError = ''
  let fallback: MemoryStore | undefined
  let pending: Invalidation[] = []
  let pendingWeight = 0
  let timer: NodeJS.Timeout | undefined
  let recovering = false
  let closed = false

  function unavailable (name: string): BackendUnavailableError {
    if (startup) return new BackendUnavailableError(`${kind} ${name}: unreachable since start-up (${lastError}); running uncached until it answers`)
    if (open) return new BackendUnavailableError(`${kind} ${name}: circuit open after ${FAILURE_THRESHOLD} consecutive failures (${lastError}); retrying every ${retryInterval} ms`)
    return new BackendUnavailableError(`${kind} ${name}: held back until ${pending.length} invalidation(s) missed during an outage are replayed`)
  }

  // One promise and one timer per operation, no Promise.race: this runs on every store read.
  function bounded<T> (name: string, run: Promise<T>, ms: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timeout = setTimeout(() => reject(new BackendUnavailableError(`${kind} ${name}: no answer within ${ms} ms`)), ms)
      run.then((value) => {
        clearTimeout(timeout)
        resolve(value)
      }, (err: unknown) => {
        clearTimeout(timeout)
        reject(err instanceof CacheError ? err : new BackendUnavailableError(`${kind} ${name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }))
      })
    })
  }

  /** CacheErrors other than unavailability (e.g. PatternMatchingNotSupportedError) are answers. */
  function isOutage (err: unknown): boolean {
    return !(err instanceof CacheError) || err instanceof BackendUnavailableError
  }

  function failed (err: unknown): void {
    lastError = err instanceof Error ? err.message : String(err)
    failures++
    if (!open && !startup && failures >= FAILURE_THRESHOLD) {
      open = true
      log.warn({ backend: kind, error: lastError }, `Cache backend ${kind} failing: circuit opened, the cache is bypassed until it answers again`)
      schedule()
    }
  }

  const observe = ctx.observe
  async function onPrimary<T> (name: string, run: (store: Store) => Promise<T>): Promise<T> {
    const started = observe === undefined ? 0 : performance.now()
    try {
      const result = await bounded(name, run(primary), operationTimeout)
      failures = 0
      if (observe !== undefined) observe(name, (performance.now() - started) / 1000, false)
      return result
    } catch (err) {
      const outage = isOutage(err)
      if (observe !== undefined) observe(name, (performance.now() - started) / 1000, outage)
      if (outage) failed(err)
      throw err
    }
  }

  /** get/exists/ttl and set/add/expire: fallback store, primary, or rejection. */
  async function access<T> (name: string, run: (store: Store) => Promise<T>): Promise<T> {
    if (startup) {
      if (fallback !== undefined) return await run(fallback)
      throw unavailable(name)
    }
    if (open || pending.length > 0) throw unavailable(name)
    return await onPrimary(name, run)
  }

  /** delete/deletePattern/clear: recorded for replay whenever the primary may have missed it. */
  async function invalidate<T> (invalidation: Invalidation, run: (store: Store) => Promise<T>): Promise<T> {
    const name = invalidation.op
    if (startup) {
      record(invalidation)
      if (fallback !== undefined) return await run(fallback)
      throw unavailable(name)
    }
    if (open) {
      record(invalidation)
      throw unavailable(name)
    }
    try {
      return await onPrimary(name, run)
    } catch (err) {
      if (isOutage(err)) record(invalidation)
      throw err
    }
  }

  function record (invalidation: Invalidation): void {
    if (pending.includes(clearAll)) return
    const weight = weightOf(invalidation)
    if (invalidation.op === 'clear' && invalidation.prefix === clearAll.prefix) {
      pending = [clearAll]
    } else if (pendingWeight + weight > MAX_PENDING) {
      log.warn({ backend: kind, pending: pending.length }, `Cache backend ${kind}: too many invalidations missed; everything under "${clearAll.prefix}" will be cleared when it answers again`)
      pending = [clearAll]
    } else {
      pending.push(invalidation)
      pendingWeight += weight
      schedule()
      return
    }
    pendingWeight = 1
    schedule()
  }

  function schedule (): void {
    if (closed || timer !== undefined || recovering) return
    // Other instances may reach the server again before this one and read entries that the
    // invalidations it missed cover: with some pending, look again far sooner.
    const delay = pending.length > 0 ? Math.min(retryInterval, PENDING_RETRY_INTERVAL) : retryInterval
    timer = setTimeout(() => {
      timer = undefined
      recover().catch(() => {})
    }, delay)
    timer.unref()
  }

  async function recover (): Promise<void> {
    recovering = true
    try {
      if (startup) {
        // The primary bounds its own connect() (Redis: connectTimeout).
        await bounded('connect', primary.connect(), Math.max(operationTimeout, MIN_REPLAY_TIMEOUT))
      } else if (!await bounded('ping', primary.ping(), operationTimeout)) {
        throw new BackendUnavailableError(`${kind} ping: not answered`)
      }
      const replayed = await replay()
      if (closed || pending.length > 0) return
      failures = 0
      if (startup) {
        startup = false
        const memory = fallback
        fallback = undefined
        await memory?.close()
        log.info({ backend: kind, replayed }, `Cache backend ${kind} reachable again: switched back from the start-up fallback`)
      } else if (open) {
        open = false
        log.info({ backend: kind, replayed }, `Cache backend ${kind} answers again: circuit closed`)
      }
    } catch (err) {
      if (startup) lastError = err instanceof Error ? err.message : String(err)
      else failed(err)
    } finally {
      recovering = false
      if (startup || open || pending.length > 0) schedule()
    }
  }

  /** Runs the recorded invalidations oldest first; throws (keeping the rest) on the first failure. */
  async function replay (): Promise<number> {
    let replayed = 0
    // Invalidations recorded while replaying are replayed too; bounded all the same.
    for (let round = 0; pending.length > 0 && round < 2 * MAX_PENDING; round++) {
      if (closed) break
      const invalidation = pending[0]
      try {
        await bounded(`replay ${invalidation.op}`, apply(invalidation), replayTimeout)
      } catch (err) {
        // An answer such as Memcached's PatternMatchingNotSupportedError settles the entry: the
        // primary will never do it, and keeping it would hold the cache back forever.
        if (isOutage(err)) throw err
      }
      // record() may have collapsed the list meanwhile; drop this entry only if still there.
      const index = pending.indexOf(invalidation)
      if (index >= 0) {
        pending.splice(index, 1)
        pendingWeight -= weightOf(invalidation)
      }
      replayed++
    }
    if (pending.length === 0) pendingWeight = 0
    return replayed
  }

  async function apply (invalidation: Invalidation): Promise<unknown> {
    switch (invalidation.op) {
      case 'delete': return await primary.delete(invalidation.keys)
      case 'deletePattern': return await primary.deletePattern(invalidation.pattern)
      case 'clear': return await primary.clear(invalidation.prefix)
      case 'invalidateTags': return await primary.invalidateTags(invalidation.tags)
    }
  }

  /**
   * A token read from the start-up fallback means nothing to the primary (and one of the
   * primary's to the fallback): a fill that straddles the switch back is not stored.
   */
  const fromFallback: Token = { id: 'fallback' }

  return {
    kind,
    local: false,
    patterns: primary.patterns,
    batched: primary.batched,

    get fallbackActive () {
      return fallback !== undefined
    },

    /** The circuit is open, or the server has been unreachable since start-up. */
    get breakerOpen () {
      return open || startup
    },

    /** The start-up fallback store while it serves (for metrics). */
    get fallbackStore () {
      return fallback
    },

    async connect () {
      try {
        await primary.connect()
      } catch (err) {
        startup = true
        lastError = err instanceof Error ? err.message : String(err)
        if (ctx.fallback === 'memory') {
          fallback = new MemoryStore(ctx.memory)
          await fallback.connect()
        }
        log.warn(
          { backend: kind, error: lastError, fallback: ctx.fallback },
          `Cache backend ${kind} not reachable at start-up: ${fallback !== undefined ? 'serving from an in-memory fallback' : 'running uncached'} ` +
          `and retrying every ${retryInterval} ms in the background`
        )
        schedule()
      }
    },

    get: (key) => access('get', (store) => store.get(key)),
    read: (key, tags, create) => access('get', async (store): Promise<Read> => {
      const read = await store.read(key, tags, create)
      return store === primary ? read : { value: read.value, token: fromFallback }
    }),
    prepare: (key, token, ttlSeconds) => access('prepare', async (store) => {
      if (store !== primary) return token === fromFallback ? token : undefined
      return token === fromFallback ? undefined : await store.prepare(key, token, ttlSeconds)
    }),
    set: (key, value, ttlSeconds, token, tags) => access('set', async (store) => {
      if (token === undefined) return await store.set(key, value, ttlSeconds, undefined, tags)
      if ((token === fromFallback) !== (store !== primary)) return
      await store.set(key, value, ttlSeconds, token === fromFallback ? null : token, tags)
    }),
    add: (key, value, ttlSeconds) => access('add', (store) => store.add(key, value, ttlSeconds)),
    exists: (key) => access('exists', (store) => store.exists(key)),
    ttl: (key) => access('ttl', (store) => store.ttl(key)),
    expire: (key, seconds) => access('expire', (store) => store.expire(key, seconds)),

    delete: (keys) => invalidate({ op: 'delete', keys: [...keys] }, (store) => store.delete(keys)),
    deletePattern: (pattern) => invalidate({ op: 'deletePattern', pattern }, (store) => store.deletePattern(pattern)),
    clear: (prefix) => invalidate({ op: 'clear', prefix }, (store) => store.clear(prefix)),
    invalidateTags: (tags) => invalidate({ op: 'invalidateTags', tags: [...tags] }, (store) => store.invalidateTags(tags)),

    async ping () {
      if (startup || open) return false
      try {
        return await bounded('ping', primary.ping(), operationTimeout)
      } catch {
        return false
      }
    },

    async close () {
      closed = true
      clearTimeout(timer)
      timer = undefined
      const memory = fallback
      fallback = undefined
      await Promise.all([memory?.close(), primary.close()])
    },
  }
}

/** How much of MAX_PENDING an invalidation takes: a `delete` counts its keys. */
function weightOf (invalidation: Invalidation): number {
  return invalidation.op === 'delete' ? invalidation.keys.length : 1
}
