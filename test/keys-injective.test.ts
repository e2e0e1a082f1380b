import t from 'tap'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { CacheConfigurationError, type ServerCacheOptions } from '../index.js'
import { withCache } from './helpers/app.js'
import { startRedisServer } from './helpers/redis-server.js'

// Two requests whose filled-in values differ never share a key, and a mutation invalidates
// exactly the keys its GET routes build for the same values: a key that one user's values could
// also spell for another user's is a data leak.

// Dots too, so that `a.b` reads as written (a path segment of `..`, even `%2E%2E`, is resolved before routing).
const enc = (value: string): string => encodeURIComponent(value).replace(/\./g, '%2E')

/** Values that separators, glob characters, percent signs or an encoding could confuse. */
const TRICKY = ['a', 'b', 'a_b', 'a_b_c', '_', 'a:b', 'a%3Ab', 'a%5Fb', '%', '*', 'a*', '?', '[a]', '\\', 'é', '🔑', 'x y', 'a.b', '../x', 'a/b']

interface Answer { status: number, cache: string | undefined, body: unknown }

async function get (app: FastifyInstance, url: string): Promise<Answer> {
  const res = await app.inject(url)
  return { status: res.statusCode, cache: res.headers['x-cache'] as string | undefined, body: res.statusCode === 200 ? res.json() : res.body }
}

async function outcomes (app: FastifyInstance, urls: string[]): Promise<Array<string | undefined>> {
  const out: Array<string | undefined> = []
  for (const url of urls) out.push((await get(app, url)).cache)
  return out
}

const echo = async (request: FastifyRequest): Promise<unknown> => ({ params: request.params, query: request.query })

t.test('/a/:x/:y with a_{x}_{y}: 1_2/3 and 1/2_3 are two entries', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  app.get('/a/:x/:y', { config: { cache: { keyPrefix: 'a_{x}_{y}' } } }, async (request) => request.params)
  for (let round = 0; round < 2; round++) {
    const first = await get(app, '/a/1_2/3')
    const second = await get(app, '/a/1/2_3')
    t.same([first.cache, first.body], [round === 0 ? 'MISS' : 'HIT', { x: '1_2', y: '3' }], `round ${round}: 1_2/3`)
    t.same([second.cache, second.body], [round === 0 ? 'MISS' : 'HIT', { x: '1', y: '2_3' }], `round ${round}: 1/2_3, its own body`)
  }
})

t.test('templates whose placeholders nothing separates are refused at registration, saying why', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  let n = 0
  const register = (method: 'get' | 'patch', cache: Record<string, unknown>): Error | null => {
    try {
      app[method](`/r${n++}/:x/:y`, { config: { cache: cache as never } }, async () => 'x')
      return null
    } catch (err) {
      return err as Error
    }
  }
  for (const template of ['{x}{y}', '{x}-{y}', 'p_{x}ab{y}', '{x}.{y}', '{x}~{y}', '{x}%{y}', 'ok_{x}_{y}9{x}']) {
    const err = register('get', { keyPrefix: template })
    t.ok(err instanceof CacheConfigurationError, `${template} is refused`)
    t.match(err?.message, /^config\.cache of GET \/r\d+\/:x\/:y: keyPrefix: '.*' is ambiguous: \{(x|y)\} and \{(x|y)\} could be filled two ways/, `${template}: names route, template and placeholders`)
    t.ok(err?.message.includes(`'${template}'`), 'quotes the template')
    t.match(err?.message, /separator such as ':' or '_'/, 'says what joins placeholders')
  }
  const mutations: Array<[string, Record<string, unknown>]> = [
    ['toInvalidateExtra', { toInvalidateExtra: { '{x}{y}': 'global' } }],
    ["toInvalidateExtra['p']", { toInvalidateExtra: { p: '{x}-{y}' } }],
    ['patternToInvalidateExtra', { patternToInvalidateExtra: ['{x}{y}*'] }],
    ['invalidateNamespaces[0]', { invalidateNamespaces: ['n{x}{y}'] }],
  ]
  for (const [field, cache] of mutations) {
    const err = register('patch', { keyPrefix: 'm', ...cache })
    t.ok(err instanceof CacheConfigurationError, `${field} is checked too`)
    t.match(err?.message, new RegExp(`PATCH /r\\d+/:x/:y: ${field.replace(/[[\]']/g, '\\$&')}: '.*' is ambiguous`))
  }
  for (const template of ['{x}_{y}', '{x}:{y}', '{x}/{y}', '{x} {y}', '{x}é{y}', 'a{x}b_c{y}d', 'u_{x}_w:page_{y}', '{x}{x}_{y}']) {
    t.equal(register('get', { keyPrefix: template }), null, `${template} is accepted`)
  }
  t.equal(register('get', { keyPrefix: 'k', tags: ['{x}{y}'] }), null, 'tags are exact strings, not keys: not checked')
})

t.test('a mutation invalidates exactly what its GET routes cached, for any value', async (t) => {
  const { app, logs } = await withCache()
  t.teardown(() => app.close())
  app.get('/items/:owner/:itemId', { config: { cache: { keyPrefix: 'u_{owner}_w', resourceIdName: 'itemId', resourceIdType: 'string' } } }, echo)
  app.get('/lists/:owner', { config: { cache: { keyPrefix: 'list_{owner}:page_{page}', resourceIdName: null } } }, echo)
  app.get('/ns/:owner/:n', { config: { cache: { keyPrefix: 'ns_{owner}:n_{n}', resourceIdName: null } } }, echo)
  app.post('/invalidate/:kind', {
    config: {
      cache: {
        keyPrefix: 'inv',
        resourceIdName: null,
        toInvalidateExtra: { 'u_{owner}_w': '{itemId}' },
        patternToInvalidateExtra: ['list_{owner}:*'],
        invalidateNamespaces: ['ns_{owner}'],
      },
    },
  }, async () => ({ ok: true }))
  const urls = (owner: string): string[] => [
    `/items/${enc(owner)}/${enc('1_2')}`, `/lists/${enc(owner)}?page=1`, `/lists/${enc(owner)}?page=${enc('1_2')}`, `/ns/${enc(owner)}/${enc(owner)}`,
  ]
  const all = TRICKY.flatMap(urls)
  t.same(await outcomes(app, all), all.map(() => 'MISS'), 'every owner has entries of its own')
  t.same(await outcomes(app, all), all.map(() => 'HIT'))
  for (const owner of TRICKY) {
    const res = await app.inject({ method: 'POST', url: '/invalidate/x', payload: { owner, itemId: '1_2' } })
    t.equal(res.statusCode, 200)
    const expected = TRICKY.flatMap((o) => urls(o).map(() => o === owner ? 'MISS' : 'HIT'))
    t.same(await outcomes(app, all), expected, `owner ${JSON.stringify(owner)}: its key, pattern and namespace entries are gone, no other owner's`)
  }
  t.same(logs.filter((l) => l.level >= 40).map((l) => l.msg), [], 'no warnings')
})

t.test('attacker inputs: never a 500, never another resource\'s body', async (t) => {
  const { app } = await withCache()
  t.teardown(() => app.close())
  app.get('/r/:id', { config: { cache: { keyPrefix: 'r', resourceIdType: 'string' } } }, echo)
  app.get('/raw/r/:id', echo)
  app.get('/q', { config: { cache: { keyPrefix: 'q_{a}_{b}', resourceIdName: null } } }, echo)
  app.get('/raw/q', echo)
  const big = 'x'.repeat(10 * 1024)
  const paths = ['%0D%0ASet-Cookie:%20a=b', '%00', 'a%00b', '..', '%2E%2E', '..%2F..%2Fetc', '*', '%5Ba-z%5D', '%3F', 'a%5C', 'a:b', 'a_b', '%25', '%ED%A0%80', '%FF', 'é', '%F0%9F%94%91', '__proto__', 'constructor']
  const queries = [
    `a=${big}&b=1`, `a=${enc(big + '_')}&b=1`, `a=${enc('é'.repeat(5000))}&b=_`, 'a=%0D%0A&b=%00', 'a=*&b=?', 'a=1_2&b=3', 'a=1&b=2_3',
    'a=1&a=2&b=3', 'a[x]=1&b=2', 'a=..&b=..%2F', 'a=%ED%A0%80&b=%ED%A0%81', `a=1&b=2&${Array.from({ length: 2000 }, (_, i) => `p${i}=${i}`).join('&')}`, 'b=only',
  ]
  const urls = [...paths.map((p) => `/r/${p}`), `/r/${big}`, ...queries.map((q) => `/q?${q}`)]
  for (const url of urls) {
    const own = await get(app, `/raw${url}`)
    for (let i = 0; i < 2; i++) {
      const res = await get(app, url)
      const label = `${url.slice(0, 60)}${url.length > 60 ? '…' : ''} #${i}`
      t.ok(res.status < 500, `${label}: ${res.status}`)
      if (res.status === 200) t.same(res.body, own.body, `${label}: its own body (${res.cache})`)
    }
  }
})

t.test('pattern invalidation on Redis: glob characters in a value never widen it', async (t) => {
  const server = await startRedisServer(t)
  const options: ServerCacheOptions = { backend: 'redis', redis: { url: server.url }, fallback: 'none', operationTimeout: 2000 }
  const { app, logs } = await withCache(options)
  t.teardown(() => app.close())
  // In the query string: a 10 KB path param is beyond Fastify's maxParamLength.
  app.get('/p', { config: { cache: { keyPrefix: 'p_{owner}:page_{page}', resourceIdName: null } } }, echo)
  app.patch('/p', { config: { cache: { keyPrefix: 'pm', resourceIdName: null, patternToInvalidateExtra: ['p_{owner}:*'] } } }, async () => ({ ok: true }))
  const owners = ['*', 'a*', '?', '??', '[a-z]', '[^x]', '\\', '\\*', 'a', 'b', 'ab', '%2A', '%', 'a_b', 'a:b', 'é', '\uFFFD', 'x'.repeat(10 * 1024)]
  const pages = (owner: string): string[] => ['1', '*'].map((page) => `/p?owner=${enc(owner)}&page=${enc(page)}`)
  const all = owners.flatMap(pages)
  t.same(await outcomes(app, all), all.map(() => 'MISS'))
  t.same(await outcomes(app, all), all.map(() => 'HIT'))
  for (const owner of owners) {
    t.equal((await app.inject({ method: 'PATCH', url: `/p?owner=${enc(owner)}` })).statusCode, 200)
    const expected = owners.flatMap((o) => pages(o).map(() => o === owner ? 'MISS' : 'HIT'))
    t.same(await outcomes(app, all), expected, `owner ${JSON.stringify(owner.slice(0, 20))} clears its own pages only`)
  }
  // Redis would receive U+FFFD for a lone surrogate (a JSON body can carry one): it is encoded apart.
  t.equal((await app.inject({ method: 'PATCH', url: '/p', payload: { owner: '\uD800' } })).statusCode, 200)
  t.same(await outcomes(app, all), all.map(() => 'HIT'), "a lone surrogate clears nothing of owner '\uFFFD'")
  t.same(logs.filter((l) => l.level >= 40).map((l) => l.msg), [], 'no warnings')
})
