import t from 'tap'
import { withCache } from './helpers/app.js'
import { threeStores } from './helpers/stores.js'

const DEBUG = 20
const stores = threeStores()

for (const [name, options] of stores) {
  t.test(`${name}: a response above maxEntryBytes is served but not stored, with a debug log`, async (t) => {
    const { app, logs } = await withCache({ ...await options(t), maxEntryBytes: 1000 })
    t.teardown(() => app.close())
    let calls = 0
    app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc' } } }, async (request) => {
      calls++
      const size = Number((request.params as { id: string }).id)
      return { fill: 'y'.repeat(size) }
    })
    for (let i = 0; i < 2; i++) {
      const big = await app.inject('/doc/2000')
      t.equal(big.statusCode, 200)
      t.equal(big.json().fill.length, 2000)
      t.equal(big.headers['x-cache'], 'MISS')
    }
    t.equal(calls, 2, 'the large response ran the handler each time')
    t.ok(logs.some((l) => l.level === DEBUG && l.msg === 'Response not cached: its body is larger than maxEntryBytes' && l.bytes === 2011 && l.maxEntryBytes === 1000), 'debug log with the sizes')
    await app.inject('/doc/900')
    t.equal((await app.inject('/doc/900')).headers['x-cache'], 'HIT', 'a response within the limit is stored')
  })

  t.test(`${name}: a provider value above maxEntryBytes is returned but not stored, and replaces no older value`, async (t) => {
    const { app } = await withCache({ ...await options(t), maxEntryBytes: 100 })
    t.teardown(() => app.close())
    await app.ready()
    await app.cache.set('k', 'small')
    t.equal(await app.cache.get('k'), 'small')
    await app.cache.set('k', 'z'.repeat(200))
    t.equal(await app.cache.get('k'), undefined, 'the older value is gone, the larger one not stored')
    let produced = 0
    const big = 'w'.repeat(500)
    t.equal(await app.cache.getOrSet('g', () => { produced++; return big }), big)
    t.equal(await app.cache.getOrSet('g', () => { produced++; return big }), big)
    t.equal(produced, 2, 'not stored: produced each time')
  })
}

t.test('maxEntryBytes must be a positive integer', async (t) => {
  await t.rejects(withCache({ maxEntryBytes: 0 }), /maxEntryBytes/)
  await t.rejects(withCache({ maxEntryBytes: 1.5 }), /maxEntryBytes/)
})
