import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { withCache, WARN } from './helpers/app.js'
import { startMemcached } from './helpers/memcached-server.js'

/**
 * Provider calls on Memcached take effect in the order they were made: a `delete` (or a
 * `clear({ namespace })`) called after a `set` of the same key, without waiting for the `set` to
 * finish, leaves nothing behind. A write that needs more round trips than the delete (namespace
 * version reads, then the write) must not land after it.
 */

const ROUNDS = 1000
/** Rounds in flight at once; each round has its own key (and namespace), so rounds never interact. */
const BATCH = 50

const nextTick = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

/** Runs `round(i)` for i in 0..ROUNDS-1, BATCH at a time; resolves how many returned true. */
async function count (round: (i: number) => Promise<boolean>): Promise<number> {
  let hits = 0
  for (let start = 0; start < ROUNDS; start += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, ROUNDS - start) }, (_, j) => round(start + j))
    for (const hit of await Promise.all(batch)) if (hit) hits++
  }
  return hits
}

interface Case {
  name: string
  /** One round on fresh names: resolves true when the value is there afterwards. */
  round (app: FastifyInstance, id: string): Promise<boolean>
  /** The reverse order: the set comes last, so its value must be there. */
  kept?: boolean
}

const cases: Case[] = [
  {
    name: 'set then delete in the same tick',
    async round (app, id) {
      const key = `same-tick:${id}`
      const set = app.cache.set(key, { id })
      const del = app.cache.delete(key)
      await Promise.all([set, del])
      return await app.cache.get(key) !== undefined
    },
  },
  {
    name: 'set then delete one setImmediate apart',
    async round (app, id) {
      const key = `next-turn:${id}`
      const set = app.cache.set(key, { id })
      await nextTick()
      const del = app.cache.delete(key)
      await Promise.all([set, del])
      return await app.cache.get(key) !== undefined
    },
  },
  {
    name: 'set in a namespace in use, then clear({ namespace }) in the same tick',
    async round (app, id) {
      const namespace = `ns-warm-same-${id}`
      await app.cache.set('other', 1, { namespace })
      const set = app.cache.set('k', { id }, { namespace })
      const clear = app.cache.clear({ namespace })
      await Promise.all([set, clear])
      return await app.cache.get('k', { namespace }) !== undefined
    },
  },
  {
    name: 'set in a namespace in use, then clear({ namespace }) one setImmediate apart',
    async round (app, id) {
      const namespace = `ns-warm-next-${id}`
      await app.cache.set('other', 1, { namespace })
      const set = app.cache.set('k', { id }, { namespace })
      await nextTick()
      const clear = app.cache.clear({ namespace })
      await Promise.all([set, clear])
      return await app.cache.get('k', { namespace }) !== undefined
    },
  },
  {
    name: 'set in a new namespace, then clear({ namespace }) in the same tick',
    async round (app, id) {
      const namespace = `ns-cold-same-${id}`
      const set = app.cache.set('k', { id }, { namespace })
      const clear = app.cache.clear({ namespace })
      await Promise.all([set, clear])
      return await app.cache.get('k', { namespace }) !== undefined
    },
  },
  {
    name: 'set in a new namespace, then clear({ namespace }) one setImmediate apart',
    async round (app, id) {
      const namespace = `ns-cold-next-${id}`
      const set = app.cache.set('k', { id }, { namespace })
      await nextTick()
      const clear = app.cache.clear({ namespace })
      await Promise.all([set, clear])
      return await app.cache.get('k', { namespace }) !== undefined
    },
  },
  // The same calls in the reverse order: whatever keeps the order above must not lose a set
  // made after a delete or clear.
  {
    name: 'delete then set in the same tick',
    kept: true,
    async round (app, id) {
      const key = `reverse:${id}`
      await app.cache.set(key, 'old')
      const del = app.cache.delete(key)
      const set = app.cache.set(key, { id })
      await Promise.all([del, set])
      return await app.cache.get(key) !== undefined
    },
  },
  {
    name: 'clear({ namespace }) then set in that namespace in the same tick',
    kept: true,
    async round (app, id) {
      const namespace = `ns-reverse-${id}`
      await app.cache.set('k', 'old', { namespace })
      const clear = app.cache.clear({ namespace })
      const set = app.cache.set('k', { id }, { namespace })
      await Promise.all([clear, set])
      return await app.cache.get('k', { namespace }) !== undefined
    },
  },
]

for (const servers of [1, 2]) {
  t.test(`memcached, ${servers} server${servers > 1 ? 's' : ''}: a delete or clear called after a set wins`, async (t) => {
    const started = await Promise.all(Array.from({ length: servers }, () => startMemcached()))
    for (const server of started) t.teardown(() => server.stop())
    // A generous operationTimeout: on a loaded machine a slow answer must not count as an outage.
    const { app, logs } = await withCache({
      backend: 'memcached',
      memcached: { servers: started.map((server) => server.address).join(',') },
      operationTimeout: 2000,
    })
    t.teardown(() => app.close())

    // The check itself works: without the delete, every value is read back.
    const kept = await count(async (i) => {
      await app.cache.set(`kept:${i}`, { i })
      return await app.cache.get(`kept:${i}`) !== undefined
    })
    t.equal(kept, ROUNDS, 'a set alone is read back every time')

    for (const { name, round, kept } of cases) {
      const there = await count((i) => round(app, String(i)))
      if (kept === true) t.equal(there, ROUNDS, `${name}: the value is there in ${there} of ${ROUNDS} rounds`)
      else t.equal(there, 0, `${name}: the value was left in place in ${there} of ${ROUNDS} rounds`)
    }
    t.same(logs.filter((line) => line.level >= WARN).map((line) => line.msg), [], 'no warnings (no call was skipped as a failure)')
  })
}
