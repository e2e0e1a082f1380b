// Baseline: a plain Fastify route returning the ~1 KB object (serialized per request), no plugin.
import { createApp, itemRoute, serve } from './common.js'

const app = createApp()
itemRoute(app)
await serve(app)
