import t, { type Test } from 'tap'
import auth from '@fastify/auth'
import jwt from '@fastify/jwt'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { appWith, cacheOptions, listen, ORDERS, outcome, type Get, type Order, type Seen } from './helpers/ecosystem.js'
import { startRedisServer, type Teardown } from './helpers/redis-server.js'

// Access checks must apply to cached hits exactly as to misses: after a valid user filled the
// cache, a request with no token, a bad token, or from a user who is not (or no longer) allowed
// gets its 401/403, never the cached 200. Checked with @fastify/jwt (`onRequest:
// [app.authenticate]`) and with @fastify/auth used as `preHandler: app.auth([...])` (its
// documented usage), as `onRequest: app.auth([...])`, and as a context-wide
// `addHook('preHandler' | 'onRequest', app.auth([...]))`.

declare module 'fastify' {
  interface FastifyInstance {
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}
declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: { sub: string, role: 'admin' | 'user' }
    user: { sub: string, role: 'admin' | 'user' }
  }
}

const SECRET = 'a-test-secret-of-reasonable-length'
const forbidden = (message: string): Error => Object.assign(new Error(message), { statusCode: 403 })

interface Setup { get: Get, calls: () => number, tokens: { alice: string, bob: string, forged: string }, banned: Set<string> }

async function setup (t: Teardown, order: Order, backend: 'memory' | 'redis', redisUrl: string | undefined, routes: (app: FastifyInstance, handler: (request: FastifyRequest) => Promise<unknown>) => void): Promise<Setup> {
  const app = await appWith(t, order, async (app: FastifyInstance) => {
    await app.register(jwt, { secret: SECRET })
    await app.register(auth)
  }, cacheOptions(backend, redisUrl))
  // @fastify/jwt's documented authenticate decorator.
  app.decorate('authenticate', async function (request: FastifyRequest, reply: FastifyReply) {
    try {
      await request.jwtVerify()
    } catch (err) {
      reply.send(err)
    }
  })
  let calls = 0
  routes(app, async (request) => {
    calls++
    return { report: 'confidential', for: request.user?.sub ?? null, n: calls }
  })
  const tokens = {
    alice: app.jwt.sign({ sub: 'alice', role: 'admin' }),
    bob: app.jwt.sign({ sub: 'bob', role: 'user' }),
    // A well-formed token signed with another secret, claiming to be an admin.
    forged: app.jwt.sign({ sub: 'mallory', role: 'admin' }, { key: 'not-the-secret-of-this-app-at-all' }),
  }
  return { get: await listen(app), calls: () => calls, tokens, banned }
}

// Shared between the strategies of one app (a fresh app per test).
let banned = new Set<string>()

/** @fastify/auth strategies. */
async function requireAdmin (request: FastifyRequest): Promise<void> {
  await request.jwtVerify()
  if (request.user.role !== 'admin') throw forbidden('admins only')
}
async function requireActive (request: FastifyRequest): Promise<void> {
  await request.jwtVerify()
  if (banned.has(request.user.sub)) throw forbidden('account suspended')
}

const bearer = (token: string | undefined): { headers: Record<string, string> } => ({ headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })

/** A rejected request: the status, and nothing of the cached body; never a hit. */
function rejected (t: Test, seen: Seen, status: number, what: string): void {
  t.equal(seen.status, status, `${what}: ${status}`)
  t.not(seen.cache, 'HIT', `${what}: not served from the cache`)
  t.notMatch(seen.body, /confidential/, `${what}: no cached body`)
}

/** A shared (not per-user) response behind an admin-only check at `path`. */
async function sharedAdminOnly (t: Test, s: Setup, path: string): Promise<void> {
  const fill = await s.get(path, bearer(s.tokens.alice))
  const hit = await s.get(path, bearer(s.tokens.alice))
  t.same([outcome(fill), outcome(hit)], ['200 MISS', '200 HIT'], 'the admin fills the cache, then hits')
  t.equal(hit.body, fill.body)
  rejected(t, await s.get(path), 401, 'no token')
  rejected(t, await s.get(path, bearer('not.a.jwt')), 401, 'a malformed token')
  rejected(t, await s.get(path, bearer(s.tokens.forged)), 401, 'a token with a bad signature')
  rejected(t, await s.get(path, bearer(s.tokens.bob)), 403, 'a valid user who is not an admin')
  t.equal(outcome(await s.get(path, bearer(s.tokens.alice))), '200 HIT', 'the admin still hits')
  t.equal(s.calls(), 1, 'the handler ran once, for the admin')
}

/** A per-user response (vary: authorization) behind an "active account" check at `path`. */
async function perUserActive (t: Test, s: Setup, path: string): Promise<void> {
  const alice1 = await s.get(path, bearer(s.tokens.alice))
  const alice2 = await s.get(path, bearer(s.tokens.alice))
  t.same([outcome(alice1), outcome(alice2)], ['200 MISS', '200 HIT'])
  t.match(alice2.json(), { for: 'alice' })
  t.equal(alice2.body, alice1.body)
  rejected(t, await s.get(path), 401, 'no token')
  rejected(t, await s.get(path, bearer(s.tokens.forged)), 401, 'a token with a bad signature')
  const bob1 = await s.get(path, bearer(s.tokens.bob))
  const bob2 = await s.get(path, bearer(s.tokens.bob))
  t.same([outcome(bob1), outcome(bob2)], ['200 MISS', '200 HIT'], 'each user has their own entry')
  t.match(bob2.json(), { for: 'bob' })
  t.equal(bob2.body, bob1.body)
  t.equal(s.calls(), 2)
  // Alice's token is still valid, and her entry is cached: the check must still refuse her.
  s.banned.add('alice')
  rejected(t, await s.get(path, bearer(s.tokens.alice)), 403, 'a suspended user whose response is cached')
  t.equal(outcome(await s.get(path, bearer(s.tokens.bob))), '200 HIT', 'other users still hit')
  t.equal(s.calls(), 2)
}

function suite (t: Test, backend: 'memory' | 'redis', redisUrl?: string): void {
  const make = async (t: Test, order: Order, routes: Parameters<typeof setup>[4]): Promise<Setup> => {
    banned = new Set()
    return await setup(t, order, backend, redisUrl, routes)
  }
  for (const order of ORDERS) {
    const label = `${order}, ${backend}`

    t.test(`@fastify/jwt onRequest: per-user responses (${label})`, async (t) => {
      const s = await make(t, order, (app, handler) => {
        app.get('/me/:id', { onRequest: [app.authenticate], config: { cache: { keyPrefix: 'me', vary: ['authorization'] } } }, handler)
      })
      const seen = []
      for (const token of [s.tokens.alice, s.tokens.alice, undefined, 'not.a.jwt', s.tokens.forged, s.tokens.bob, s.tokens.bob, s.tokens.alice]) {
        const res = await s.get('/me/1', bearer(token))
        seen.push(`${outcome(res)} ${res.status === 200 ? res.json().for : '-'}`)
      }
      t.same(seen, ['200 MISS alice', '200 HIT alice', '401 - -', '401 - -', '401 - -', '200 MISS bob', '200 HIT bob', '200 HIT alice'])
      t.equal(s.calls(), 2)
    })

    t.test(`@fastify/jwt onRequest: a shared response (${label})`, async (t) => {
      const s = await make(t, order, (app, handler) => {
        app.get('/shared/:id', { onRequest: [app.authenticate], config: { cache: { keyPrefix: 'shared' } } }, handler)
      })
      const seen = []
      for (const token of [s.tokens.alice, s.tokens.bob, undefined, 'not.a.jwt', s.tokens.forged, s.tokens.bob]) {
        seen.push(outcome(await s.get('/shared/1', bearer(token))))
      }
      t.same(seen, ['200 MISS', '200 HIT', '401 -', '401 -', '401 -', '200 HIT'])
      t.equal(s.calls(), 1)
    })

    t.test(`@fastify/auth as onRequest: app.auth([...]) (${label})`, async (t) => {
      const s = await make(t, order, (app, handler) => {
        app.get('/admin/:id', { onRequest: app.auth([requireAdmin]), config: { cache: { keyPrefix: 'admin' } } }, handler)
        app.get('/mine/:id', { onRequest: app.auth([requireActive]), config: { cache: { keyPrefix: 'mine', vary: ['authorization'] } } }, handler)
      })
      t.test('shared, admins only', (t) => sharedAdminOnly(t, s, '/admin/1'))
      t.test('per user, active accounts only', async (t) => {
        const before = s.calls()
        await perUserActive(t, { ...s, calls: () => s.calls() - before }, '/mine/1')
      })
    })

    // @fastify/auth's documented usage: the lookup is the route's last preHandler hook, after it.
    t.test(`@fastify/auth as preHandler: app.auth([...]) (${label})`, async (t) => {
      const s = await make(t, order, (app, handler) => {
        app.get('/admin/:id', { preHandler: app.auth([requireAdmin]), config: { cache: { keyPrefix: 'admin' } } }, handler)
        app.get('/mine/:id', { preHandler: app.auth([requireActive]), config: { cache: { keyPrefix: 'mine', vary: ['authorization'] } } }, handler)
      })
      t.test('shared, admins only', (t) => sharedAdminOnly(t, s, '/admin/1'))
      t.test('per user, active accounts only', async (t) => {
        const before = s.calls()
        await perUserActive(t, { ...s, calls: () => s.calls() - before }, '/mine/1')
      })
    })

    t.test(`@fastify/auth as an app-level preHandler hook (${label})`, async (t) => {
      const s = await make(t, order, (app, handler) => {
        app.addHook('preHandler', app.auth([requireAdmin]))
        app.get('/report/:id', { config: { cache: { keyPrefix: 'report' } } }, handler)
      })
      await sharedAdminOnly(t, s, '/report/1')
    })

    t.test(`@fastify/auth as a context-wide preHandler hook (${label})`, async (t) => {
      const s = await make(t, order, (app, handler) => {
        app.register(async (admin) => {
          admin.addHook('preHandler', admin.auth([requireAdmin]))
          admin.get('/report/:id', { config: { cache: { keyPrefix: 'report' } } }, handler)
        }, { prefix: '/admin' })
      })
      await sharedAdminOnly(t, s, '/admin/report/1')
    })

    t.test(`@fastify/auth as a context-wide onRequest hook (${label})`, async (t) => {
      const s = await make(t, order, (app, handler) => {
        app.register(async (admin) => {
          admin.addHook('onRequest', admin.auth([requireAdmin]))
          admin.get('/report/:id', { config: { cache: { keyPrefix: 'report' } } }, handler)
        }, { prefix: '/admin' })
      })
      await sharedAdminOnly(t, s, '/admin/report/1')
    })
  }
}

t.test('memory store', async (t) => suite(t, 'memory'))

t.test('redis store', async (t) => {
  const server = await startRedisServer(t)
  suite(t, 'redis', server.url)
})
