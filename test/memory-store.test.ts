import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { CacheConfigurationError } from '../lib/errors.js'
import { ENTRY_OVERHEAD_BYTES, MemoryStore } from '../lib/stores/memory.js'
import { storeConformance } from './helpers/store-suite.js'

storeConformance('memory', async () => ({
  store: new MemoryStore({ maxEntries: 100_000, maxBytes: 64 * 1024 * 1024 }),
  keyPrefix: 'fsc-test',
}), { patterns: true })

const kb = Buffer.alloc(1024, 1)

t.test('get returns the stored Buffer instance, not a copy', async (t) => {
  const store = new MemoryStore({ maxEntries: 10, maxBytes: 1 << 20 })
  t.teardown(() => store.close())
  const value = Buffer.allocUnsafeSlow(7).fill('payload') // a whole allocation: a view is copied (below)
  await store.set('k', value, 60)
  t.equal(await store.get('k'), value)
})

t.test('least recently used entries are evicted first; reads refresh recency', async (t) => {
  const store = new MemoryStore({ maxEntries: 3, maxBytes: 1 << 20 })
  t.teardown(() => store.close())
  for (const key of ['a', 'b', 'c']) await store.set(key, Buffer.from(key), 60)
  await store.get('a')
  await store.set('d', Buffer.from('d'), 60)
  t.same(await present(store, ['a', 'b', 'c', 'd']), ['a', 'c', 'd'], 'b was the oldest unread')
  await store.set('c', Buffer.from('c2'), 60) // an overwrite is a use too
  await store.set('e', Buffer.from('e'), 60)
  t.same(await present(store, ['a', 'c', 'd', 'e']), ['c', 'd', 'e'])
})

t.test('never holds more than maxEntries', async (t) => {
  const store = new MemoryStore({ maxEntries: 10, maxBytes: 1 << 20 })
  t.teardown(() => store.close())
  let over = 0
  for (let i = 0; i < 1000; i++) {
    if (i % 2 === 0) await store.set(`k${i}`, Buffer.from('v'), 60)
    else await store.add(`k${i}`, Buffer.from('v'), 60)
    if (store.size > 10) over++
  }
  t.equal(over, 0)
  t.equal(store.size, 10)
  t.same(await present(store, ['k989', 'k990', 'k999']), ['k990', 'k999'], 'the newest survive')
})

t.test('never holds more than maxBytes', async (t) => {
  const maxBytes = 50_000
  const store = new MemoryStore({ maxEntries: 100_000, maxBytes })
  t.teardown(() => store.close())
  let over = 0
  for (let i = 0; i < 500; i++) {
    const value = i % 7 === 0 ? Buffer.alloc(4000) : kb
    await store.set(`key-${'x'.repeat(i % 50)}-${i}`, value, 60)
    if (store.bytes > maxBytes) over++
  }
  t.equal(over, 0, 'bytes <= maxBytes after every set')
  t.ok(store.bytes > maxBytes - 5000, `the store is actually used (${store.bytes})`)
})

t.test('bytes accounts value, key and overhead', async (t) => {
  const store = new MemoryStore({ maxEntries: 10, maxBytes: 1 << 20 })
  t.teardown(() => store.close())
  await store.set('abc', kb, 60)
  t.equal(store.bytes, 1024 + 3 * 2 + ENTRY_OVERHEAD_BYTES)
  await store.set('abc', Buffer.alloc(10), 60)
  t.equal(store.bytes, 10 + 3 * 2 + ENTRY_OVERHEAD_BYTES, 'an overwrite replaces the old charge')
  await store.delete(['abc'])
  t.equal(store.bytes, 0)
})

t.test('a value bigger than maxBytes is not stored and removes the old one', async (t) => {
  const store = new MemoryStore({ maxEntries: 10, maxBytes: 4096 })
  t.teardown(() => store.close())
  await store.set('other', kb, 60)
  await store.set('k', kb, 60)
  await store.set('k', Buffer.alloc(4096), 60)
  t.equal(await store.get('k'), undefined)
  t.equal(await store.add('k2', Buffer.alloc(4096), 60), false, 'add reports it was not stored')
  t.equal(store.size, 1, 'nothing else was evicted for it')
  t.ok(await store.exists('other'))
})

t.test('invalid arguments', async (t) => {
  t.throws(() => new MemoryStore({ maxEntries: 0, maxBytes: 1024 }), CacheConfigurationError)
  t.throws(() => new MemoryStore({ maxEntries: 1, maxBytes: 1.5 }), CacheConfigurationError)
  const store = new MemoryStore({ maxEntries: 10, maxBytes: 1 << 20 })
  t.teardown(() => store.close())
  await t.rejects(store.set('k', kb, 0), RangeError)
  await t.rejects(store.set('k', kb, Number.NaN), RangeError)
  await store.set('k', kb, 60)
  t.equal(await store.expire('k', 0), true, 'a non-positive expiry deletes, as in Redis')
  t.equal(await store.exists('k'), false)
})

t.test('expired entries are swept without being read', async (t) => {
  const store = new MemoryStore({ maxEntries: 10_000, maxBytes: 1 << 24, sweepIntervalMs: 50 })
  t.teardown(() => store.close())
  for (let i = 0; i < 3000; i++) await store.set(`short:${i}`, kb, 1)
  await store.set('long', kb, 100)
  t.equal(store.size, 3001)
  await sleep(1400)
  t.equal(store.size, 1, 'only the unexpired entry is left')
  t.equal(store.bytes, 1024 + 'long'.length * 2 + ENTRY_OVERHEAD_BYTES)
})

t.test('the sweep timer is unref\'d, stops when empty and on close', async (t) => {
  const started = t.capture(globalThis, 'setInterval', setInterval)
  const stopped = t.capture(globalThis, 'clearInterval', clearInterval)
  const store = new MemoryStore({ maxEntries: 10, maxBytes: 1 << 20, sweepIntervalMs: 10 })
  t.equal(started.calls.length, 0, 'no timer while empty')

  await store.set('k', kb, 60)
  await store.set('k2', kb, 60)
  t.equal(started.calls.length, 1, 'one timer for the whole store')
  const first = (started.calls[0] as { returned: NodeJS.Timeout }).returned
  t.equal(first.hasRef(), false, 'never keeps the process alive')
  await store.delete(['k', 'k2'])
  await sleep(50)
  t.ok(stopped.args().some(([timer]) => timer === first), 'stopped once the store is empty')

  await store.set('k', kb, 60)
  t.equal(started.calls.length, 2, 'restarted by the next write')
  const second = (started.calls[1] as { returned: NodeJS.Timeout }).returned
  await store.close()
  t.ok(stopped.args().some(([timer]) => timer === second), 'stopped by close')
  t.equal(store.size, 0)
  t.equal(store.bytes, 0)
})

async function present (store: MemoryStore, keys: string[]): Promise<string[]> {
  const found: string[] = []
  for (const key of keys) if (await store.exists(key)) found.push(key)
  return found
}

t.test('a value that is a view into a larger buffer is copied (it would keep the whole buffer alive); a whole one is kept as given', async (t) => {
  const store = new MemoryStore({ maxEntries: 10, maxBytes: 1 << 20 })
  t.teardown(() => store.close())
  const pool = Buffer.alloc(8192, 1)
  const view = pool.subarray(100, 1100)
  await store.set('view', view, 60)
  const kept = store.getSync('view') as Buffer
  t.same(kept, view, 'same bytes')
  t.not(kept.buffer, pool.buffer, 'not the 8 KiB buffer it was cut from')
  t.equal(kept.buffer.byteLength, 1000, 'an allocation of its own size')
  pool.fill(2)
  t.equal(kept[0], 1, 'a later change to the original does not reach the stored value')
  const whole = Buffer.allocUnsafeSlow(500).fill(3)
  await store.set('whole', whole, 60)
  t.equal(store.getSync('whole'), whole, 'a whole allocation is kept as given')
})
