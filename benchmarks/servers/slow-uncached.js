// The 20 ms origin route, no plugin: the reference for the miss path.
import { createApp, serve, slowRoute } from './common.js'

const app = createApp()
slowRoute(app)
await serve(app)
