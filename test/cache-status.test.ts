import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { withCache } from './helpers/app.js'
import { freePort } from './helpers/redis-server.js'

type Bare = string | number | boolean
interface Member { item: Bare, params: Record<string, Bare> }

/** An RFC 8941 List of Items (tokens, strings, integers, booleans, with parameters): throws if malformed. */
function parseList (input: string): Member[] {
  let i = 0
  const s = input
  const ows = (): void => { while (s[i] === ' ' || s[i] === '\t') i++ }
  const sp = (): void => { while (s[i] === ' ') i++ }
  const fail = (why: string): never => { throw new Error(`not a structured field list at ${i}: ${why} in '${input}'`) }
  const key = (): string => {
    const m = /^[a-z*][a-z0-9_\-.*]*/.exec(s.slice(i))
    if (m === null) fail('key expected')
    i += (m as RegExpExecArray)[0].length
    return (m as RegExpExecArray)[0]
  }
  const bare = (): Bare => {
    const rest = s.slice(i)
    let m: RegExpExecArray | null
    if (rest[0] === '"') {
      let out = ''
      for (i++; i < s.length; i++) {
        if (s[i] === '\\') { out += s[++i]; continue }
        if (s[i] === '"') { i++; return out }
        out += s[i]
      }
      return fail('unterminated string')
    }
    if ((m = /^\?[01]/.exec(rest)) !== null) { i += 2; return m[0] === '?1' }
    if ((m = /^-?\d{1,15}/.exec(rest)) !== null) { i += m[0].length; return Number(m[0]) }
    if ((m = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/.exec(rest)) !== null) { i += m[0].length; return m[0] }
    return fail('bare item expected')
  }
  const members: Member[] = []
  sp()
  while (i < s.length) {
    const item = bare()
    const params: Record<string, Bare> = {}
    while (s[i] === ';') {
      i++
      sp()
      const k = key()
      params[k] = s[i] === '=' ? (i++, bare()) : true
    }
    members.push({ item, params })
    ows()
    if (i >= s.length) break
    if (s[i] !== ',') fail('comma expected')
    i++
    ows()
    if (i >= s.length) fail('trailing comma')
  }
  return members
}

/** The one member this cache adds; throws when the header is absent or not exactly that. */
function status (header: unknown): Member {
  if (typeof header !== 'string') throw new Error('no Cache-Status header')
  const list = parseList(header)
  if (list.length !== 1 || list[0].item !== 'fastify-server-cache') throw new Error(`unexpected Cache-Status: ${header}`)
  return list[0]
}

t.test('the parser reads RFC 9211 examples and refuses garbage', async (t) => {
  t.same(parseList('ExampleCache; hit, OtherCache; fwd=uri-miss; stored; collapsed'), [
    { item: 'ExampleCache', params: { hit: true } },
    { item: 'OtherCache', params: { fwd: 'uri-miss', stored: true, collapsed: true } },
  ])
  t.same(parseList('A; detail="x y"; ttl=-5'), [{ item: 'A', params: { detail: 'x y', ttl: -5 } }])
  t.throws(() => parseList('a;;b'))
  t.throws(() => parseList('a, '))
})

t.test('Cache-Status on hit, miss (stored or not), stale and bypass', async (t) => {
  const { app } = await withCache({ cacheStatus: true })
  t.teardown(() => app.close())
  app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc', expiration: 1, staleWhileRevalidate: 30 } } }, async () => ({ ok: true }))
  app.get('/private/:id', { config: { cache: { keyPrefix: 'private' } } }, async (_request, reply) => reply.header('cache-control', 'private').send({ mine: true }))
  app.get('/missing/:id', { config: { cache: { keyPrefix: 'missing' } } }, async (_request, reply) => reply.code(404).send({ nope: true }))
  app.get('/plain', async () => ({ plain: true }))

  const miss = await app.inject('/doc/1')
  t.same(status(miss.headers['cache-status']).params, { fwd: 'miss', stored: true })
  const hit = await app.inject('/doc/1')
  t.same(status(hit.headers['cache-status']).params, { hit: true })
  t.same(status((await app.inject({ url: '/doc/1', headers: { 'if-none-match': hit.headers.etag as string } })).headers['cache-status']).params, { hit: true }, 'a 304 from the cache is a hit')
  await sleep(1100)
  t.same(status((await app.inject('/doc/1')).headers['cache-status']).params, { fwd: 'stale' })
  t.same(status((await app.inject('/private/1')).headers['cache-status']).params, { fwd: 'miss', detail: 'private' })
  t.same(status((await app.inject('/missing/1')).headers['cache-status']).params, { fwd: 'miss', detail: 'status' })
  t.same(status((await app.inject('/doc/abc')).headers['cache-status']).params, { fwd: 'bypass', detail: 'key' })
  t.equal((await app.inject('/plain')).headers['cache-status'], undefined, 'routes without config.cache get none')
})

t.test('Cache-Status when the store is unavailable: bypass with its reason', async (t) => {
  const port = await freePort()
  const { app } = await withCache({ backend: 'redis', redis: { url: `redis://127.0.0.1:${port}`, connectTimeout: 200 }, fallback: 'none', cacheStatus: true })
  t.teardown(() => app.close())
  app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc' } } }, async () => ({ ok: true }))
  const res = await app.inject('/doc/1')
  t.equal(res.statusCode, 200)
  t.same(status(res.headers['cache-status']).params, { fwd: 'bypass', detail: 'store-unavailable' })
})

t.test('Cache-Status is off by default', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  app.get('/doc/:id', { config: { cache: { keyPrefix: 'doc' } } }, async () => ({ ok: true }))
  t.equal((await app.inject('/doc/1')).headers['cache-status'], undefined)
  t.equal((await app.inject('/doc/1')).headers['cache-status'], undefined)
})
