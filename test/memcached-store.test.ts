import t from 'tap'
import memjs from 'memjs'
import { pino } from 'pino'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { CacheConfigurationError, InvalidRequestError, PatternMatchingNotSupportedError } from '../lib/errors.js'
import type { MemcachedOptions } from '../lib/schemas.js'
import { createMemcachedStore } from '../lib/stores/memcached.js'
import { parseServers } from '../lib/stores/memcached-client.js'
import { KeySpace, MAX_LEVELS, memcachedKey } from '../lib/stores/memcached-keys.js'
import type { Store } from '../lib/stores/store.js'
import { storeConformance, type StoreUnderTest } from './helpers/store-suite.js'
import { memcachedStats, startMemcached, type MemcachedServer, type MemcachedServerOptions } from './helpers/memcached-server.js'

/** What the helpers need from a tap test: cleanup that runs even when it fails. */
interface Test { teardown (fn: () => unknown): void }

const OPERATION_TIMEOUT = 100 // store timeout: 2 x this = 200 ms
const silent = pino({ level: 'silent' })
const b = (s: string): Buffer => Buffer.from(s)
let prefixes = 0
const uniquePrefix = (): string => `mc-${process.pid}-${++prefixes}`

async function server (t: Test, options?: MemcachedServerOptions): Promise<MemcachedServer> {
  const started = await startMemcached(options)
  t.teardown(() => started.stop())
  return started
}

async function store (t: Test, memcached: MemcachedOptions, keyPrefix = uniquePrefix()): Promise<Store> {
  const created = createMemcachedStore(memcached, { keyPrefix, operationTimeout: OPERATION_TIMEOUT, log: silent })
  t.teardown(() => created.close())
  await created.connect()
  return created
}

/** A separate client on one server: what another application sharing it would see. */
function direct (t: Test, s: MemcachedServer): memjs.Client {
  const client = memjs.Client.create(s.address, { retries: 1, timeout: 1, logger: { log () {} } })
  t.teardown(() => client.close())
  return client
}

/**
 * A conformance setup on `count` fresh servers. What each server stored is kept in `observed`,
 * in the order of the setup calls (the first is the suite's shared store).
 */
function onServers (count: number, observed: number[][]): () => Promise<StoreUnderTest> {
  let calls = 0
  return async () => {
    const call = calls++
    const servers = await Promise.all(Array.from({ length: count }, () => startMemcached()))
    const keyPrefix = uniquePrefix()
    const created = createMemcachedStore({ servers: servers.map((s) => s.address) },
      { keyPrefix, operationTimeout: OPERATION_TIMEOUT, log: silent })
    await created.connect()
    return {
      store: created,
      keyPrefix,
      teardown: async () => {
        observed[call] = await Promise.all(servers.map(async (s) => Number((await memcachedStats(s.port)).total_items)))
        await Promise.all(servers.map((s) => s.stop()))
      },
    }
  }
}

const observedOnOne: number[][] = []
const observedOnTwo: number[][] = []
storeConformance('memcached, one server', onServers(1, observedOnOne), { patterns: false })
storeConformance('memcached, two servers', onServers(2, observedOnTwo), { patterns: false })

t.test('the two-server conformance run stored keys on both servers', async (t) => {
  t.equal(observedOnOne.length, 2, 'both one-server setups ran')
  const [shared] = observedOnTwo
  t.ok(shared !== undefined && shared.length === 2 && shared.every((items) => items > 100),
    `the suite's store wrote to both servers: ${JSON.stringify(shared)} items`)
})

t.test('memcachedKey: valid keys stay readable, all others are hashed, and nothing collides', async (t) => {
  t.equal(memcachedKey('fastify-cache:widget:42'), 'fastify-cache:widget:42')
  const long = 'a'.repeat(299)
  const odd = [long + 'x', long + 'y', 'with space', 'with\nnewline', 'tab\there', 'ünïcødé', '日本語', '\u0000', '',
    'a'.repeat(250), 'a'.repeat(251), 'key~#' + 'f'.repeat(64)]
  const mapped = odd.map(memcachedKey)
  for (const key of mapped) {
    t.match(key, /^[\x21-\x7e]{1,250}$/, `valid memcached key: ${key.slice(0, 40)}`)
  }
  t.equal(new Set(mapped).size, odd.length, 'no two logical keys share a memcached key')
  t.equal(mapped[9], 'a'.repeat(250), 'exactly 250 ASCII bytes is still plain')
  t.match(mapped[2], /^with_space~#[0-9a-f]{64}$/, 'hashed keys keep a readable start')
  // A valid key that looks like a hashed one is hashed itself, so it cannot equal the real one.
  const hashed = memcachedKey('with space')
  t.not(memcachedKey(hashed), hashed)
})

t.test('parseServers: string or array, credentials, IPv6, and errors that name the option', async (t) => {
  t.same(parseServers('a:1, b'), [
    { host: 'a', port: 1, username: undefined, password: undefined },
    { host: 'b', port: 11211, username: undefined, password: undefined },
  ])
  t.same(parseServers(['u:p%40ss@[::1]:2']), [{ host: '::1', port: 2, username: 'u', password: 'p@ss' }])
  t.throws(() => parseServers('a:1,'), CacheConfigurationError)
  t.throws(() => parseServers('a:99999'), { message: /memcached\.servers/ })
  t.throws(() => parseServers(['a:b:c']), CacheConfigurationError)
})

t.test('one server: the basic operations', async (t) => {
  const s = await server(t)
  const prefix = uniquePrefix()
  const cache = await store(t, { servers: s.address }, prefix)
  const k = (name: string): string => `${prefix}:${name}`
  t.equal(cache.kind, 'memcached')
  t.equal(await cache.ping(), true)

  const key = k('widget:1')
  t.equal(await cache.get(key), undefined)
  await cache.set(key, b('one'), 60)
  t.same(await cache.get(key), b('one'))
  t.equal(await cache.exists(key), true)
  t.equal(await cache.ttl(key), 60)
  t.equal(await cache.add(key, b('two'), 60), false, 'add keeps an existing entry')
  t.same(await cache.get(key), b('one'))
  t.equal(await cache.add(k('widget:2'), b('two'), 60), true, 'add stores a missing entry')
  t.equal(await cache.delete([key, key, k('widget:2'), k('missing')]), 2, 'counts what existed, once each')
  t.equal(await cache.exists(key), false)
  t.equal(await cache.ttl(key), -2)
  t.equal(await cache.expire(key, 10), false)

  const empty = k('empty')
  await cache.set(empty, Buffer.alloc(0), 60)
  t.same(await cache.get(empty), Buffer.alloc(0), 'an empty value is not a miss')

  await t.rejects(cache.deletePattern('widget:*'), PatternMatchingNotSupportedError)
  await t.rejects(cache.deletePattern('user_42_widgets:*'), { message: /user_42_widgets:\*/ })
})

t.test('long, spaced, control-character and unicode keys round-trip without colliding', async (t) => {
  const s = await server(t)
  const prefix = uniquePrefix()
  const cache = await store(t, { servers: s.address }, prefix)
  const long = 'k'.repeat(299)
  const keys = [`${prefix}:ns:${long}a`, `${prefix}:ns:${long}b`, `${prefix}:with space`, `${prefix}:ns:line\nbreak`,
    `${prefix}:ns:line\rbreak`, `${prefix}:ütf:日本語`, `${prefix}:ns:\u0000\u0007`, `${prefix}:ns:a~#b`,
    `foreign ${long}`, `foreign ${long}!`]
  for (const [i, key] of keys.entries()) await cache.set(key, b(`value ${i}`), 60)
  for (const [i, key] of keys.entries()) t.same(await cache.get(key), b(`value ${i}`), JSON.stringify(key.slice(-20)))
  t.equal(await cache.ttl(keys[0] as string), 60)
  t.equal(await cache.delete([keys[0] as string]), 1)
  t.equal(await cache.get(keys[0] as string), undefined)
  t.same(await cache.get(keys[1] as string), b('value 1'), 'the key differing in its last character is intact')
})

t.test('two servers: keys are sharded over both, and everything works across them', async (t) => {
  const [s1, s2] = [await server(t), await server(t)]
  const cache = await store(t, { servers: [s1.address, s2.address] })
  const prefix = uniquePrefix()
  const foreign = Array.from({ length: 40 }, (_, i) => `shard-${prefix}-${i}`)
  for (const key of foreign) await cache.set(key, b(key), 60)
  const onServer = async (s: MemcachedServer): Promise<number> => {
    const client = direct(t, s)
    let found = 0
    for (const key of foreign) if ((await client.get(memcachedKey(key))).value !== null) found++
    return found
  }
  const [n1, n2] = [await onServer(s1), await onServer(s2)]
  t.ok(n1 > 0 && n2 > 0, `both servers hold keys (${n1} + ${n2})`)
  t.equal(n1 + n2, foreign.length, 'each key on exactly one server')
  for (const key of foreign) t.same(await cache.get(key), b(key))
})

t.test('clear of one namespace leaves other namespaces, un-namespaced and foreign keys', async (t) => {
  const s = await server(t, { args: ['-F'] }) // flush_all disabled: clear must not need it
  const prefix = uniquePrefix()
  const cache = await store(t, { servers: s.address }, prefix)
  const other = await store(t, { servers: s.address }, prefix) // a second instance of the app
  const outsider = direct(t, s)
  await outsider.set('foreign:users:1', b('theirs'), { expires: 60 })
  await cache.set(`${prefix}:users:1`, b('u1'), 60)
  await cache.set(`${prefix}:users:2`, b('u2'), 60)
  await cache.set(`${prefix}:users`, b('no namespace'), 60)
  await cache.set(`${prefix}:posts:1`, b('p1'), 60)
  await cache.set('foreign:posts:1', b('via store'), 60)
  t.same(await other.get(`${prefix}:users:1`), b('u1'), 'the other instance sees the entry')

  await other.clear(`${prefix}:users:`)
  t.equal(await cache.get(`${prefix}:users:1`), undefined, 'cleared by another instance: gone here too')
  t.equal(await cache.exists(`${prefix}:users:2`), false)
  t.equal(await cache.ttl(`${prefix}:users:2`), -2)
  t.equal(await cache.delete([`${prefix}:users:2`]), 0)
  t.same(await cache.get(`${prefix}:users`), b('no namespace'), '`users` is not inside `users:`')
  t.same(await cache.get(`${prefix}:posts:1`), b('p1'))
  t.same((await outsider.get('foreign:users:1')).value, b('theirs'), 'a foreign key survives')

  await cache.set(`${prefix}:users:1`, b('new'), 60)
  t.same(await other.get(`${prefix}:users:1`), b('new'), 'the namespace is usable again')

  await cache.set(`${prefix}:posts:7:comments:1`, b('c1'), 60)
  await cache.set(`${prefix}:posts:7:likes`, b('l'), 60)
  await cache.set(`${prefix}:posts:8:comments:1`, b('c8'), 60)
  await other.clear(`${prefix}:posts:7:comments:`)
  t.equal(await cache.get(`${prefix}:posts:7:comments:1`), undefined, 'a deeper prefix clears too')
  t.same(await cache.get(`${prefix}:posts:7:likes`), b('l'), 'its siblings stay')
  t.same(await cache.get(`${prefix}:posts:8:comments:1`), b('c8'))
  t.same(await cache.get(`${prefix}:posts:1`), b('p1'))

  await cache.clear(`${prefix}:`)
  for (const key of ['users:1', 'users', 'posts:1']) t.equal(await other.get(`${prefix}:${key}`), undefined, key)
  t.same((await outsider.get('foreign:users:1')).value, b('theirs'), 'clear() leaves foreign keys')
  t.same(await cache.get('foreign:posts:1'), b('via store'), 'and keys outside keyPrefix written by the store')

  await t.rejects(cache.clear(`${prefix}:${'s:'.repeat(MAX_LEVELS + 1)}`), InvalidRequestError, 'deeper than the versioned levels')
  await t.rejects(cache.clear('elsewhere:'), InvalidRequestError, 'outside keyPrefix')
  await t.rejects(cache.clear(`${prefix}:no-colon`), InvalidRequestError)
})

t.test('concurrent lookups and writes share version reads, but none after a clear joins a read from before it', async (t) => {
  const s = await server(t)
  const prefix = uniquePrefix()
  const cache = await store(t, { servers: s.address }, prefix)
  for (let i = 0; i < 20; i++) await cache.set(`${prefix}:users:${i}`, b(`u${i}`), 60)
  const gets = async (): Promise<number> => Number((await memcachedStats(s.port)).cmd_get)

  const before = await gets()
  const found = await Promise.all(Array.from({ length: 20 }, (_, i) => cache.get(`${prefix}:users:${i}`)))
  t.same(found, Array.from({ length: 20 }, (_, i) => b(`u${i}`)), 'every lookup finds its own entry')
  // Alone, each lookup fetches the global version, the `users:` version and its entry.
  const fetched = await gets() - before
  t.ok(fetched < 20 * 3, `20 concurrent lookups fetched ${fetched} keys, fewer than 60`)
  const beforeWrites = await gets()
  await Promise.all(Array.from({ length: 20 }, (_, i) => cache.set(`${prefix}:users:${i}`, b(`v${i}`), 60)))
  const written = await gets() - beforeWrites
  // Alone, each write reads the two versions it is stored under.
  t.ok(written < 20 * 2, `20 concurrent writes fetched ${written} version keys, fewer than 40`)
  t.same(await cache.get(`${prefix}:users:3`), b('v3'), 'and each landed under the current versions')

  const early = cache.get(`${prefix}:users:1`) // its version reads are now in flight
  const clearing = cache.clear(`${prefix}:users:`)
  const late = cache.get(`${prefix}:users:1`)
  t.same(await early, b('v1'), 'a lookup that started before the clear may still see the entry')
  await clearing
  t.equal(await late, undefined, 'a lookup that started after the clear does not see it')
})

t.test('versions lost with a restarted server never bring cleared entries back', async (t) => {
  const servers = [await server(t), await server(t)]
  const addresses = servers.map((s) => s.address)
  const shard = (key: string): number => memjs.Utils.hashCode(key) % servers.length
  const prefix = uniquePrefix()
  const keys = new KeySpace(prefix)
  const cache = await store(t, { servers: addresses }, prefix)
  // A namespace whose version keys live on one server and an entry of it on the other.
  const versionHome = shard(keys.globalVersionKey)
  const ns = Array.from({ length: 50 }, (_, i) => `ns${i}`).find((n) => shard(keys.levelVersionKey(`${n}:`)) === versionHome)
  t.ok(ns !== undefined)
  const home = servers[versionHome] as MemcachedServer
  const away = servers[1 - versionHome] as MemcachedServer
  const read = async (key: string): Promise<string> => String((await direct(t, home).get(key)).value)
  let entryKey: string | undefined
  let fullKey = ''
  for (let i = 0; i < 50 && entryKey === undefined; i++) {
    fullKey = `${prefix}:${ns}:${i}`
    await cache.set(fullKey, b('before clear'), 60)
    const candidate = keys.entryKey(keys.describe(fullKey), [await read(keys.globalVersionKey), await read(keys.levelVersionKey(`${ns}:`))])
    if (shard(candidate) !== versionHome) entryKey = candidate
  }
  t.ok(entryKey !== undefined, 'found an entry stored away from its versions')

  await cache.clear(`${prefix}:${ns}:`)
  await home.restart() // the versions are gone; the old entry is not
  const old = (await direct(t, away).get(entryKey as string)).value
  t.match(String(old), /before clear$/, 'the old entry is still stored')
  t.equal(await cache.get(fullKey), undefined, 'and stays unreachable')
  await cache.set(fullKey, b('fresh'), 60)
  t.same(await cache.get(fullKey), b('fresh'))
})

t.test('ttl and expire: the header carries the expiry, memcached gets slack, 30 days is absolute', async (t) => {
  const s = await server(t)
  const prefix = uniquePrefix()
  const cache = await store(t, { servers: s.address }, prefix)
  const key = `${prefix}:t:1`

  await cache.set(key, b('short'), 1)
  t.same(await cache.get(key), b('short'), 'readable right after a 1 s set')
  t.equal(await cache.ttl(key), 1)
  await sleep(1100)
  t.equal(await cache.get(key), undefined, 'expired after 1 s')
  t.equal(await cache.exists(key), false)
  t.equal(await cache.ttl(key), -2)
  t.equal(await cache.delete([key]), 0, 'an expired entry is not counted as deleted')
  t.equal(await cache.add(key, b('again'), 60), true, 'add over an expired entry stores')
  t.same(await cache.get(key), b('again'))

  t.equal(await cache.expire(key, 5), true)
  t.equal(await cache.ttl(key), 5)
  t.same(await cache.get(key), b('again'), 'expire keeps the value')
  t.equal(await cache.expire(key, 1), true)
  await sleep(2100)
  const outsider = direct(t, s)
  t.equal(await cache.get(key), undefined, 'a shortened expiry really expires')
  t.equal(await cache.expire(key, 5), false, 'missing after expiry')

  const days40 = 40 * 24 * 3600
  await cache.set(key, b('long'), days40)
  t.same(await cache.get(key), b('long'), 'more than 30 days is sent as absolute time (else: expired at once)')
  t.ok(await cache.ttl(key) >= days40 - 1)
  t.equal(await cache.expire(key, days40), true)
  t.same(await cache.get(key), b('long'))

  await outsider.set('foreign-raw', b('raw bytes'), { expires: 60 })
  t.same(await cache.get('foreign-raw'), b('raw bytes'), 'a value without our header is returned as is')
  t.equal(await cache.ttl('foreign-raw'), -1, 'its expiry is unknown')
  t.equal(await cache.expire('foreign-raw', 1), true, 'expire uses touch on it')
  t.same((await outsider.get('foreign-raw')).value, b('raw bytes'), 'without rewriting it')
})

t.test('a passed-in client is used and never closed', async (t) => {
  const s = await server(t)
  const client = direct(t, s)
  const prefix = uniquePrefix()
  const cache = createMemcachedStore({ client }, { keyPrefix: prefix, operationTimeout: OPERATION_TIMEOUT, log: silent })
  await cache.connect()
  await cache.set(`${prefix}:a`, b('x'), 60)
  t.same(await cache.get(`${prefix}:a`), b('x'))
  await cache.close()
  await client.set('still-open', b('yes'), { expires: 60 })
  t.same((await client.get('still-open')).value, b('yes'), 'the client still works after close()')
})

t.test('connect rejects when no server answers, quickly; resolves with one of two', async (t) => {
  const s = await server(t)
  const dead = await server(t)
  await dead.kill()
  const logs: Array<{ level: number, msg: string }> = []
  const log = pino({ level: 'warn' }, { write: (line: string) => { logs.push(JSON.parse(line)) } })
  const alone = createMemcachedStore({ servers: dead.address }, { keyPrefix: uniquePrefix(), operationTimeout: OPERATION_TIMEOUT, log })
  t.teardown(() => alone.close())
  const started = Date.now()
  await t.rejects(alone.connect(), { code: 'FST_CACHE_BACKEND_UNAVAILABLE', message: new RegExp(dead.address) })
  t.ok(Date.now() - started < 1000, 'refused at once, no long retries')
  t.equal(await alone.ping(), false)

  const half = createMemcachedStore({ servers: `${s.address},${dead.address}` }, { keyPrefix: uniquePrefix(), operationTimeout: OPERATION_TIMEOUT, log })
  t.teardown(() => half.close())
  await half.connect()
  t.match(logs, [{ level: 40, msg: /some servers do not answer/ }])
  t.equal(await half.ping(), true)
})

t.test('a stopped server: operations reject within the timeout, even under steady load; SIGCONT heals', async (t) => {
  const s = await server(t)
  const prefix = uniquePrefix()
  const cache = await store(t, { servers: s.address }, prefix)
  await cache.set(`${prefix}:a`, b('x'), 60)
  s.pause()
  t.teardown(() => s.resume())

  // A request every 20 ms: each write would re-arm memjs's socket idle timer forever.
  const outcomes = await Promise.all(Array.from({ length: 30 }, async (_, i) => {
    await sleep(i * 20)
    const started = Date.now()
    const error = await cache.get(`${prefix}:a`).then(() => undefined, (err: Error) => err)
    return { error, elapsed: Date.now() - started }
  }))
  for (const { error, elapsed } of outcomes) {
    t.ok(error instanceof Error, 'rejected')
    t.ok(elapsed < 2 * OPERATION_TIMEOUT + 300, `within the timeout (${elapsed} ms)`)
  }
  t.equal(await cache.ping(), false)

  s.resume()
  t.same(await cache.get(`${prefix}:a`), b('x'), 'answers again after SIGCONT, data intact')
  t.equal(await cache.ping(), true)
  await sleep(500) // let abandoned sockets (if any) reach the server
  t.equal((await memcachedStats(s.port)).curr_connections, '2', 'one connection of ours (+ this stats one): none orphaned by the resets')
})

t.test('kill and restart on the same port: fails fast while down, works again after', async (t) => {
  const s = await server(t)
  const prefix = uniquePrefix()
  const cache = await store(t, { servers: s.address }, prefix)
  await cache.set(`${prefix}:a`, b('x'), 60)
  await s.kill()
  const started = Date.now()
  await t.rejects(cache.get(`${prefix}:a`))
  await t.rejects(cache.set(`${prefix}:a`, b('y'), 60))
  t.ok(Date.now() - started < 1000, 'refused, not hanging')
  t.equal(await cache.ping(), false)
  await t.rejects(cache.connect())

  await s.restart()
  t.equal(await cache.ping(), true)
  t.equal(await cache.get(`${prefix}:a`), undefined, 'a restarted memcached is empty')
  await cache.set(`${prefix}:a`, b('z'), 60)
  t.same(await cache.get(`${prefix}:a`), b('z'))
})

t.test('SASL: wrong credentials reject promptly instead of hanging', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mc-sasl-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'memcached.conf'), 'mech_list: plain\n')
  const s = await server(t, { args: ['-S'], env: { SASL_CONF_PATH: dir } })
  const cache = createMemcachedStore({ servers: s.address, username: 'nobody', password: 'wrong' },
    { keyPrefix: uniquePrefix(), operationTimeout: OPERATION_TIMEOUT, log: silent })
  t.teardown(() => cache.close())
  const started = Date.now()
  await t.rejects(cache.connect(), { code: 'FST_CACHE_BACKEND_UNAVAILABLE', message: /authentication/ })
  await t.rejects(cache.get('k'), { message: /authentication/ })
  t.ok(Date.now() - started < 2000)
  t.equal(await cache.ping(), false)
})

t.test('SASL: the right credentials authenticate, and reads and writes go through', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mc-sasl-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const db = join(dir, 'sasldb')
  // Cyrus SASL's own tool (Debian: sasl2-bin) writes the user database memcached reads.
  execFileSync('saslpasswd2', ['-p', '-c', '-f', db, '-a', 'memcached', 'alice'], { input: 's3cret', env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } })
  writeFileSync(join(dir, 'memcached.conf'), `mech_list: plain\nsasldb_path: ${db}\n`)
  const s = await server(t, { args: ['-S'], env: { SASL_CONF_PATH: dir } })
  const prefix = uniquePrefix()
  const cache = createMemcachedStore({ servers: s.address, username: 'alice', password: 's3cret' },
    { keyPrefix: prefix, operationTimeout: OPERATION_TIMEOUT, log: silent })
  t.teardown(() => cache.close())
  await cache.connect()
  await cache.set(`${prefix}:a`, Buffer.from('v1'), 60)
  t.same(await cache.get(`${prefix}:a`), Buffer.from('v1'))
  t.equal(await cache.ping(), true)
  const wrong = createMemcachedStore({ servers: s.address, username: 'alice', password: 'not-it' },
    { keyPrefix: prefix, operationTimeout: OPERATION_TIMEOUT, log: silent })
  t.teardown(() => wrong.close())
  await t.rejects(wrong.connect(), { message: /authentication/ }, 'the same user with another password is refused')
})

t.test('a server that dies under deletes and writes: every call rejects, none leaves an unhandled rejection', async (t) => {
  const s = await server(t)
  const cache = await store(t, { servers: s.address })
  await cache.set(`${cache.kind}-dies:a`, Buffer.from('v'), 60)
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })
  await s.kill()
  // The guard's get and delete, the entry's reads and writes: each fails on its own.
  const calls = [
    cache.delete([`${cache.kind}-dies:a`, `${cache.kind}-dies:b`]),
    cache.set(`${cache.kind}-dies:c`, Buffer.from('v'), 60),
    cache.read(`${cache.kind}-dies:a`, ['tag']),
    cache.invalidateTags(['tag']),
  ]
  const results = await Promise.allSettled(calls)
  t.ok(results.every((r) => r.status === 'rejected'), 'every call rejects (the caller fails open)')
  // Requests pending on a dead connection fail by their deadline: wait past all of them.
  await new Promise((resolve) => setTimeout(resolve, 4 * OPERATION_TIMEOUT + 200))
  t.same(unhandled, [], 'no promise was left to reject unhandled (that would crash the app)')
})

t.test('a lookup that may create (a route miss) adds a guard it does not know of in its own batch; a known one is only read', async (t) => {
  const s = await server(t)
  const prefix = uniquePrefix()
  const cache = await store(t, { servers: s.address }, prefix)
  const stat = async (name: string): Promise<number> => Number((await memcachedStats(s.port))[name])
  const key = `${prefix}:items:1`
  await cache.set(`${prefix}:items:0`, b('another entry'), 60) // the namespace's versions exist

  const bare = await cache.read(key)
  t.equal(bare.token?.id, undefined, 'a read that may not create leaves the missing guard missing: its token needs prepare()')
  let sets = await stat('cmd_set')
  const cold = await cache.read(key, ['item:1'], 60)
  t.equal(cold.value, undefined, 'a miss')
  t.type(cold.token?.id, 'string', 'its token is complete: the key guard and the tag guard were created in the lookup')
  t.equal(await stat('cmd_set') - sets, 2, 'two adds: the key guard and the tag guard')
  t.equal(await cache.prepare(key, cold.token as NonNullable<typeof cold.token>, 60), cold.token, 'prepare() has nothing left to do (no round trip)')

  await cache.set(key, b('body'), 60, cold.token, ['item:1'])
  sets = await stat('cmd_set')
  const hit = await cache.read(key, ['item:1'], 60)
  t.same(hit.value, b('body'), 'the fill under that token is served')
  t.equal(await stat('cmd_set') - sets, 0, 'a hit of a key whose guards this process knows sends no add')

  // Another instance, which has never seen these guards: its first lookup adds (and fails, the
  // guards exist: nothing changes), the next ones only read.
  const other = await store(t, { servers: s.address }, prefix)
  sets = await stat('cmd_set')
  t.same((await other.read(key, ['item:1'], 60)).value, b('body'), 'the other instance hits the same entry')
  t.same((await other.read(key, ['item:1'], 60)).value, b('body'))
  t.equal(await stat('cmd_set') - sets, 2, 'its first lookup sent two adds, its second none')

  // An invalidation deletes the key's guard: the entry is no longer valid, and the next lookup,
  // with the guard known (but gone), reads it missing; prepare() then creates it.
  await other.delete([key])
  const after = await cache.read(key, ['item:1'], 60)
  t.equal(after.value, undefined, 'the invalidated entry is not served')
  const prepared = await cache.prepare(key, after.token as NonNullable<typeof after.token>, 60)
  t.type(prepared?.id, 'string', 'prepare() created the guard the lookup found missing')
  t.not(prepared?.id, cold.token?.id, 'a new guard, not the invalidated one')
})

/** Text-protocol `set`s on one connection until memcached refuses one (-M: out of memory); how many it stored. */
async function fillUntilRefused (port: number, prefix: string, size: number, max: number): Promise<number> {
  const { connect } = await import('node:net')
  const socket = connect(port, '127.0.0.1')
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  try {
    const value = 'x'.repeat(size)
    for (let i = 0; i < max; i++) {
      const reply = await new Promise<string>((resolve) => {
        socket.once('data', (d) => resolve(d.toString()))
        socket.write(`set ${prefix}${i} 0 0 ${size}\r\n${value}\r\n`)
      })
      if (!reply.startsWith('STORED')) return i
    }
    return max
  } finally {
    socket.destroy()
  }
}

t.test('a server out of memory (-M): a lookup whose guard add is refused still reads what is there', async (t) => {
  const s = await server(t, { args: ['-m', '2', '-M'] })
  const prefix = uniquePrefix()
  const cache = await store(t, { servers: s.address }, prefix)
  const key = `${prefix}:items:1`
  await cache.set(`${prefix}:items:0`, b('another entry'), 60)
  const cold = await cache.read(key, [], 60)
  await cache.set(key, b('body'), 60, cold.token)
  // Every page memcached has goes to big values, then the small classes fill: nothing more fits.
  t.ok(await fillUntilRefused(s.port, 'big', 60_000, 1000) < 1000, 'big values refused')
  t.ok(await fillUntilRefused(s.port, 'small', 16, 200_000) < 200_000, 'small values refused')
  // Another instance has never seen the key's guard: its lookup adds one (refused) and reads.
  const other = await store(t, { servers: s.address }, prefix)
  const read = await other.read(key, [], 60)
  t.same(read.value, b('body'), 'the entry is read as if the add had not been sent')
  t.type(read.token?.id, 'string', 'with the guard in place')
})

t.test("requests are built byte for byte as memjs's own builder builds them, for any request number up to 2^32 - 1", async (t) => {
  const { requestBuffer } = await import('../lib/stores/memcached-client.js')
  const cases: Array<[number, string, Buffer | undefined, Buffer | undefined]> = [
    [0x00, 'prefix:widget:42', undefined, undefined],
    [0x01, 'prefix:ключ:é', Buffer.from([0, 0, 0, 0, 0, 0, 0x0e, 0x10]), Buffer.from('value bytes')],
    [0x02, 'k', Buffer.alloc(8, 7), Buffer.alloc(3000, 1)],
    [0x1c, 'guard\u0000g', Buffer.from([0, 0, 1, 0]), undefined],
    [0x0b, '', undefined, undefined],
  ]
  for (const [opcode, key, extras, value] of cases) {
    for (const opaque of [0, 1, 0x7fffffff]) {
      t.same(requestBuffer(opcode, key, extras, value, opaque), memjs.Utils.makeRequestBuffer(opcode, key, extras ?? '', value ?? '', opaque), `opcode ${opcode}, key ${JSON.stringify(key)}, opaque ${opaque}`)
    }
    // memjs cannot build these (its numbers never get there without turning negative).
    const high = requestBuffer(opcode, key, extras, value, 0xffffffff)
    t.equal(high.readUInt32BE(12), 0xffffffff)
    t.same(high.subarray(16), memjs.Utils.makeRequestBuffer(opcode, key, extras ?? '', value ?? '', 0).subarray(16))
  }
})
