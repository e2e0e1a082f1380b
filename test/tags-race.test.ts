import t from 'tap'
import type { FastifyInstance } from 'fastify'
import {
  assertFresh, assertNotJoined, assertStale, CONTROL_ITERATIONS, ITERATIONS, param, racer, reader, stores, UNGUARDED,
  type Connect, type Db, type Kind, type SharedStore,
} from './helpers/race.js'

/**
 * "Consistency across instances" (API.md) for tags and namespaces: the race of
 * test/cross-instance.test.ts, with the GET's entry removed only through a tag or a namespace.
 * Two app instances share one store (one keyPrefix, each its own client), as two processes behind
 * a load balancer would. Instance B starts a slow miss that reads the database and then sleeps;
 * while it sleeps, instance A answers a PATCH that changes the data and invalidates the tag
 * `owner:{ownerId}` (or clears the namespace `user_{ownerId}_widgets`). From the moment A's PATCH
 * response has arrived, no GET on A or B may return the pre-PATCH data: not while B's slow miss is
 * in flight, and not after it finished (B must not store what it read before the PATCH).
 *
 * The PATCH never names the GET's key: the tagged GET is keyed `widget:{widgetId}` and the PATCH's
 * own key is `owner_patch`, so only the tag (or namespace) can reach the entry.
 */

/** GET /owners/:ownerId/widgets/:widgetId, keyed widget:{widgetId}, tagged owner:{ownerId}. */
const taggedRoute = (app: FastifyInstance, db: Db): void => {
  app.get('/owners/:ownerId/widgets/:widgetId', {
    config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', tags: ['owner:{ownerId}'] } },
  }, reader(db, 'ownerId'))
}

const kinds: Kind[] = [
  {
    name: 'invalidateTags',
    routes (app, db) {
      taggedRoute(app, db)
      app.patch('/owners/:ownerId', {
        config: { cache: { keyPrefix: 'owner_patch', resourceIdName: null, invalidateTags: ['owner:{ownerId}'] } },
      }, async (request) => ({ version: db.bump(param(request, 'ownerId')) }))
    },
    // One widget per owner: the key widget:n is the owner's alone.
    read: (n) => `/owners/${n}/widgets/${n}`,
    write: (n) => `/owners/${n}`,
  },
  {
    name: 'invalidateNamespaces',
    routes (app, db) {
      app.get('/owners/:ownerId/widgets', {
        config: { cache: { keyPrefix: 'user_{ownerId}_widgets:page_{page}', resourceIdName: null } },
      }, reader(db, 'ownerId'))
      app.patch('/owners/:ownerId/widgets/:widgetId', {
        config: { cache: { keyPrefix: 'widget', resourceIdName: 'widgetId', invalidateNamespaces: ['user_{ownerId}_widgets'] } },
      }, async (request) => ({ version: db.bump(param(request, 'ownerId')) }))
    },
    read: (n) => `/owners/${n}/widgets?page=1`,
    write: (n) => `/owners/${n}/widgets/1`,
  },
  {
    name: 'fastify.cache.invalidateTags in the handler',
    routes (app, db) {
      taggedRoute(app, db)
      app.patch('/owners/:ownerId', async (request) => {
        const ownerId = param(request, 'ownerId')
        const version = db.bump(ownerId)
        await request.server.cache.invalidateTags(`owner:${ownerId}`)
        return { version }
      })
    },
    read: (n) => `/owners/${n}/widgets/${n}`,
    write: (n) => `/owners/${n}`,
  },
]

// The resource raced is the owner: every route here has :ownerId.
const race = racer({ keyPrefix: 'tr', idOf: (request) => param(request, 'ownerId') })

// Every store's servers start first (the cluster's set-up blocks this process for a moment);
// then all races run at once, each on its own pair of instances and its own keyPrefix.
t.test('two instances sharing one store: tags and namespaces', { jobs: 32 }, async (t) => {
  const started: Array<[SharedStore, Connect]> = []
  for (const store of stores) started.push([store, await store.start(t)])
  for (const [store, connect] of started) {
    for (const kind of kinds) {
      t.test(`${store.name}, ${kind.name}: once A's PATCH answered, no GET on A or B returns pre-PATCH data (${ITERATIONS} races)`, async (t) => {
        assertFresh(t, await race(t, connect, kind, ITERATIONS))
      })
    }

    t.test(`${store.name}, coalescing: a GET on B after A's PATCH (invalidateTags) never joins B's fill that started before it (${ITERATIONS} races)`, async (t) => {
      assertNotJoined(t, await race(t, connect, kinds[0], ITERATIONS, { only: 'b' }))
    })

    if (store.control) {
      t.test(`${store.name}, control: with both instances unguarded the same race (invalidateTags) does return pre-PATCH data`, async (t) => {
        assertStale(t, await race(t, connect, kinds[0], CONTROL_ITERATIONS, { extra: { [UNGUARDED]: true } }))
      })
    }
  }
})
