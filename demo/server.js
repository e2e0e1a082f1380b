// A small API on fastify-server-cache: widgets (item, per-user list, user summary, and the mutations
// that invalidate them) and countries (reference data cached for a day, string ids).
//
//   npm start                                                    memory store
//   CACHE_BACKEND=redis CACHE_REDIS_URL=redis://127.0.0.1:6379 npm start
//   CACHE_BACKEND=memcached CACHE_MEMCACHED_SERVERS=127.0.0.1:11211 npm start
//
// Any CACHE_* variable that cacheOptionsFromEnv() reads works here; PORT and HOST pick where it
// listens, CACHE_ADMIN_TOKEN the token the /cache management routes require.
//
// The owner's list pages carry the tag `owner:{userId}`, which every widget mutation
// invalidates: that works the same on all three stores (Memcached cannot match key patterns).

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { realpathSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import serverCache, { cacheOptionsFromEnv } from 'fastify-server-cache'
import { createDatabase } from './data.js'

const DAY = 24 * 60 * 60

// Ids are validated as canonical decimal strings: validation runs before the cache looks up, so
// `/widgets/007` is refused with a 400 (never stored) rather than becoming a second copy of
// `/widgets/7` that no mutation of widget 7 invalidates.
const id = { type: 'string', pattern: '^[1-9][0-9]{0,8}$' }
const widgetParams = { type: 'object', properties: { widgetId: id }, required: ['widgetId'] }
const userParams = { type: 'object', properties: { userId: id }, required: ['userId'] }
const widgetFields = {
  name: { type: 'string', minLength: 1, maxLength: 100 },
  color: { type: 'string', minLength: 1, maxLength: 30 },
}

/**
 * Build the demo app (not listening). The plugin is registered before any route: it caches the
 * routes added after it.
 *
 * @param {object} options
 * @param {string} options.adminToken value the `x-admin-token` header must carry for /cache/*
 * @param {import('fastify-server-cache').ServerCacheOptions} [options.cache] plugin options;
 *   default `cacheOptionsFromEnv()`
 * @param {number} [options.delayMs] artificial latency of every "database" call, ms (default 20)
 * @param {boolean | object} [options.logger] Fastify `logger` option (default level info)
 */
export async function buildDemo ({ adminToken, cache = cacheOptionsFromEnv(), delayMs = 20, logger = { level: 'info' } } = {}) {
  if (typeof adminToken !== 'string' || adminToken.length === 0) throw new TypeError('buildDemo: adminToken is required')
  const db = createDatabase({ delayMs })
  const app = Fastify({ logger })

  await app.register(serverCache, {
    ...cache,
    // The management routes can wipe the cache: the plugin refuses to add them without an
    // access check.
    managementRoutes: { prefix: '/cache', onRequest: requireToken(adminToken) },
    // Prometheus metrics at GET /cache/metrics (same token), and RFC 9211 Cache-Status headers.
    metrics: {},
    cacheStatus: true,
  })

  // ---- widgets ----------------------------------------------------------------------------

  // Key `widget:{widgetId}`: the resource id is inferred from the first param named `id` or
  // ending in `Id`.
  app.get('/widgets/:widgetId', {
    schema: { params: widgetParams },
    config: { cache: { keyPrefix: 'widget', expiration: 600 } },
  }, async (request, reply) => {
    const widget = await db.getWidget(Number(request.params.widgetId))
    return widget ?? notFound(reply, `widget ${request.params.widgetId}`)
  })

  // Key `user_{userId}_widgets:page_{page}`. `resourceIdName: null`, or `userId` would be
  // inferred as the id and appended (`user_1_widgets:page_1:1`). The query string is only part
  // of the key where the template names it.
  app.get('/users/:userId/widgets', {
    schema: {
      params: userParams,
      querystring: { type: 'object', properties: { page: { type: 'string', pattern: '^[1-9][0-9]{0,5}$' } } },
    },
    onRequest: defaultPage,
    config: { cache: { keyPrefix: 'user_{userId}_widgets:page_{page}', resourceIdName: null, expiration: 60, tags: ['owner:{userId}'] } },
  }, async (request, reply) => {
    const list = await db.listWidgets(Number(request.params.userId), Number(request.query.page))
    return list ?? notFound(reply, `user ${request.params.userId}`)
  })

  // Key `user:{userId}`: the user with their widget count, which POST and DELETE change.
  app.get('/users/:userId', {
    schema: { params: userParams },
    config: { cache: { keyPrefix: 'user', expiration: 600 } },
  }, async (request, reply) => {
    const user = await db.getUser(Number(request.params.userId))
    return user ?? notFound(reply, `user ${request.params.userId}`)
  })

  // Mutations: on a 2xx answer the plugin deletes the route's own key (`keyPrefix:id`), every
  // `toInvalidateExtra` key, and every entry carrying an `invalidateTags` tag (here all pages
  // of the owner's list, whatever their number), and it has finished before the client gets
  // the response. `{ownerId}` is filled from the request: params, then query, then body fields.

  // The new widget has no id in the URL, so the own key is just `widget` (nothing is stored
  // there); what matters is the owner's count and lists. `ownerId` comes from the body.
  app.post('/widgets', {
    schema: {
      body: { type: 'object', properties: { ownerId: { type: 'integer', minimum: 1 }, ...widgetFields }, required: ['ownerId', 'name'], additionalProperties: false },
    },
    config: {
      cache: {
        keyPrefix: 'widget',
        resourceIdName: null,
        toInvalidateExtra: { user: '{ownerId}' },
        invalidateTags: ['owner:{ownerId}'],
      },
    },
  }, async (request, reply) => {
    const widget = await db.createWidget(request.body)
    if (widget === undefined) return notFound(reply, `user ${request.body.ownerId}`)
    return reply.code(201).header('location', `/widgets/${widget.id}`).send(widget)
  })

  // A rename or recolour shows in the widget and in its owner's lists, not in the count.
  // The owner is not in the URL: `loadOwner` looks it up (see below).
  app.patch('/widgets/:widgetId', {
    schema: {
      params: widgetParams,
      body: { type: 'object', properties: widgetFields, minProperties: 1, additionalProperties: false },
    },
    preHandler: loadOwner,
    config: {
      cache: {
        keyPrefix: 'widget',
        invalidateTags: ['owner:{ownerId}'],
      },
    },
  }, async (request, reply) => {
    const widget = await db.updateWidget(Number(request.params.widgetId), request.body)
    return widget ?? notFound(reply, `widget ${request.params.widgetId}`)
  })

  app.delete('/widgets/:widgetId', {
    schema: { params: widgetParams },
    preHandler: loadOwner,
    config: {
      cache: {
        keyPrefix: 'widget',
        toInvalidateExtra: { user: '{ownerId}' },
        invalidateTags: ['owner:{ownerId}'],
      },
    },
  }, async (request, reply) => {
    const deleted = await db.deleteWidget(Number(request.params.widgetId))
    return deleted ? reply.code(204).send() : notFound(reply, `widget ${request.params.widgetId}`)
  })

  // Invalidation runs after the handler, when the response is sent, with placeholders filled
  // from params, query and body. The widget's owner is in none of them, so load the widget
  // first and put its owner where the templates look. A missing widget answers 404 here, and a
  // non-2xx response invalidates nothing.
  async function loadOwner (request, reply) {
    const widget = await db.getWidget(Number(request.params.widgetId))
    if (widget === undefined) return notFound(reply, `widget ${request.params.widgetId}`)
    request.params.ownerId = String(widget.ownerId)
  }

  // ---- countries: reference data, cached for a day ----------------------------------------

  // Key `countries`: no params, so no resource id.
  app.get('/countries', {
    config: { cache: { keyPrefix: 'countries', expiration: DAY } },
  }, async () => db.listCountries())

  // Key `country:{code}`: with `resourceIdType: 'string'` the first route param is the id.
  app.get('/countries/:code', {
    schema: { params: { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]{2}$' } }, required: ['code'] } },
    config: { cache: { keyPrefix: 'country', resourceIdType: 'string', expiration: DAY } },
  }, async (request, reply) => {
    const country = await db.getCountry(request.params.code)
    return country ?? notFound(reply, `country ${request.params.code}`)
  })

  return app
}

// `{page}` is part of the list's key, and a request without a value for a placeholder is not
// cached at all (x-cache: BYPASS, with a warning). Every hook before the handler runs before
// the plugin's lookup (its last preHandler hook), so the default is filled in here (a schema
// `default` would do too) and `/users/1/widgets` shares its entry with `/users/1/widgets?page=1`.
async function defaultPage (request) {
  request.query.page ??= '1'
}

function notFound (reply, what) {
  return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `${what} not found` })
}

/** The management routes' access check: the `x-admin-token` header, compared in constant time. */
function requireToken (token) {
  const digest = (value) => createHash('sha256').update(value).digest()
  const expected = digest(token)
  return async function checkAdminToken (request, reply) {
    const given = request.headers['x-admin-token']
    if (typeof given !== 'string' || !timingSafeEqual(digest(given), expected)) {
      return reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'missing or wrong x-admin-token header' })
    }
  }
}

async function main () {
  const adminToken = process.env.CACHE_ADMIN_TOKEN || randomBytes(12).toString('hex')
  const app = await buildDemo({ adminToken })
  const host = process.env.HOST || '127.0.0.1'
  await app.listen({ port: Number(process.env.PORT || 3000), host })
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => { app.close() })

  const { backend, fallbackActive } = app.cache.stats()
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${app.server.address().port}`
  const json = "-H 'content-type: application/json'"
  console.log([
    `fastify-server-cache demo on ${url} (backend: ${backend}${fallbackActive ? ' not reachable: serving from an in-memory fallback until it is' : ''})`,
    `Admin token for ${url}/cache/*: ${adminToken}${process.env.CACHE_ADMIN_TOKEN ? '' : ' (random; set CACHE_ADMIN_TOKEN to choose one)'}`,
    '',
    'Try:',
    `  curl -i ${url}/widgets/1            # twice: x-cache: MISS, then HIT`,
    `  curl -i -X PATCH ${url}/widgets/1 ${json} -d '{"color":"purple"}'`,
    `  curl -i ${url}/widgets/1            # MISS again, now purple (so is /users/1/widgets)`,
    `  curl -H 'x-admin-token: ${adminToken}' ${url}/cache/stats`,
    '',
    'Also: GET /users/1, GET /users/1/widgets?page=2, POST /widgets, DELETE /widgets/:widgetId, GET /countries, GET /countries/FR',
  ].join('\n'))
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
