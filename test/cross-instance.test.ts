import t from 'tap'
import type { FastifyInstance } from 'fastify'
import {
  assertFresh, assertNotJoined, assertStale, CONTROL_ITERATIONS, ITERATIONS, param, racer, reader, stores, UNGUARDED,
  type Connect, type Db, type Kind, type SharedStore,
} from './helpers/race.js'

/**
 * "Consistency across instances" (API.md): two app instances sharing one store (one keyPrefix),
 * as two processes behind a load balancer would. Instance B starts a slow miss that reads the
 * database and then sleeps; while it sleeps, instance A answers a PATCH that changes the data and
 * invalidates. From the moment A's PATCH response has arrived, no GET on A or B may return the
 * pre-PATCH data: not while B's slow miss is in flight (B must not hand its in-flight fill to a
 * later request), and not after it finished (B must not store what it read before the PATCH).
 *
 * The two instances live in this process but share nothing except the store: each has its own
 * plugin registration and its own client, so B learns of A's invalidation only through the store.
 */

const listRoute = (app: FastifyInstance, db: Db): void => {
  app.get('/owners/:ownerId/widgets', {
    config: { cache: { keyPrefix: 'user_{ownerId}_widgets:page_{page}', resourceIdName: null } },
  }, reader(db, 'ownerId'))
}

const widgetRoute = (app: FastifyInstance, db: Db): void => {
  app.get('/widgets/:id', { config: { cache: { keyPrefix: 'widget' } } }, reader(db, 'id'))
}

const kinds: Kind[] = [
  {
    name: "the route's own key",
    routes (app, db) {
      widgetRoute(app, db)
      app.patch('/widgets/:id', { config: { cache: { keyPrefix: 'widget' } } }, async (request) => ({ version: db.bump(param(request, 'id')) }))
    },
    read: (n) => `/widgets/${n}`,
    write: (n) => `/widgets/${n}`,
  },
  {
    name: 'toInvalidateExtra',
    routes (app, db) {
      app.get('/owners/:ownerId/summary', { config: { cache: { keyPrefix: 'summary', resourceIdName: 'ownerId' } } }, reader(db, 'ownerId'))
      app.patch('/owners/:ownerId/widgets/:widgetId', {
        config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', toInvalidateExtra: { summary: '{ownerId}' } } },
      }, async (request) => ({ version: db.bump(param(request, 'ownerId')) }))
    },
    read: (n) => `/owners/${n}/summary`,
    write: (n) => `/owners/${n}/widgets/1`,
  },
  {
    name: 'patternToInvalidateExtra',
    patterns: true,
    routes (app, db) {
      listRoute(app, db)
      app.patch('/owners/:ownerId/widgets/:widgetId', {
        config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', patternToInvalidateExtra: ['user_{ownerId}_widgets:*'] } },
      }, async (request) => ({ version: db.bump(param(request, 'ownerId')) }))
    },
    read: (n) => `/owners/${n}/widgets?page=1`,
    write: (n) => `/owners/${n}/widgets/1`,
  },
  {
    name: 'fastify.cache.clear({ namespace }) in the handler',
    routes (app, db) {
      listRoute(app, db)
      app.patch('/owners/:ownerId/widgets/:widgetId', async (request) => {
        const ownerId = param(request, 'ownerId')
        const version = db.bump(ownerId)
        await request.server.cache.clear({ namespace: `user_${ownerId}_widgets` })
        return { version }
      })
    },
    read: (n) => `/owners/${n}/widgets?page=1`,
    write: (n) => `/owners/${n}/widgets/1`,
  },
  {
    name: 'fastify.cache.delete(key) in the handler',
    routes (app, db) {
      widgetRoute(app, db)
      app.patch('/widgets/:id', async (request) => {
        const id = param(request, 'id')
        const version = db.bump(id)
        await request.server.cache.delete(`widget:${id}`)
        return { version }
      })
    },
    read: (n) => `/widgets/${n}`,
    write: (n) => `/widgets/${n}`,
  },
]

const race = racer({
  keyPrefix: 'xi',
  // B serves only GETs, and every GET route here has one parameter: the resource's id.
  idOf: (request) => Object.values(request.params as Record<string, string>)[0],
})

// Every store's servers start first (the cluster's set-up blocks this process for a moment);
// then all races run at once, each on its own pair of instances and its own keyPrefix.
t.test('two instances sharing one store', { jobs: 32 }, async (t) => {
  const started: Array<[SharedStore, Connect]> = []
  for (const store of stores) started.push([store, await store.start(t)])
  for (const [store, connect] of started) {
    for (const kind of kinds) {
      if (kind.patterns === true && !store.patterns) continue
      t.test(`${store.name}, ${kind.name}: once A's PATCH answered, no GET on A or B returns pre-PATCH data (${ITERATIONS} races)`, async (t) => {
        assertFresh(t, await race(t, connect, kind, ITERATIONS))
      })
    }

    t.test(`${store.name}, coalescing: a GET on B after A's PATCH never joins B's fill that started before it (${ITERATIONS} races)`, async (t) => {
      assertNotJoined(t, await race(t, connect, kinds[0], ITERATIONS, { only: 'b' }))
    })

    if (store.control) {
      t.test(`${store.name}, control: with both instances unguarded the same race does return pre-PATCH data`, async (t) => {
        assertStale(t, await race(t, connect, kinds[0], CONTROL_ITERATIONS, { extra: { [UNGUARDED]: true } }))
      })
    }
  }
})
