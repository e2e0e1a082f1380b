import t from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'

// The published shape: dist/ from `npm run build` (npm test builds first), loaded by name.
const root = new URL('..', import.meta.url).pathname
const run = (args: string[]) => execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim()
const script = `
  const app = Fastify()
  await app.register(m.default ?? m, { keyPrefix: 'pkg' })
  app.get('/x', { config: { cache: { keyPrefix: 'x' } } }, async () => 'x')
  await app.inject('/x')
  const res = await app.inject('/x')
  console.log([typeof m.default, typeof m.serverCache, typeof m.cacheOptionsFromEnv, typeof m.CacheError, m.default === m.serverCache, m.default[Symbol.for('plugin-meta')].name, res.headers['x-cache']].join(' '))
  await app.close()
`

t.test('dist is built', async (t) => {
  t.ok(existsSync(`${root}dist/esm/index.js`) && existsSync(`${root}dist/cjs/index.js`), 'run npm run build first')
})

t.test('ESM import by package name', async (t) => {
  const out = run(['--input-type=module', '-e', `import * as m from 'fastify-server-cache'; import Fastify from 'fastify'; ${script}`])
  t.equal(out, 'function function function function true fastify-server-cache HIT')
})

t.test('CommonJS require by package name', async (t) => {
  const out = run(['--input-type=commonjs', '-e', `const m = require('fastify-server-cache'); const Fastify = require('fastify'); (async () => { ${script} })()`])
  t.equal(out, 'function function function function true fastify-server-cache HIT')
})
