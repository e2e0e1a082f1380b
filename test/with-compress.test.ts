import t from 'tap'
import compress from '@fastify/compress'
import Fastify, { type FastifyInstance } from 'fastify'
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import serverCache, { type ServerCacheOptions } from '../index.js'
import { startRedisServer } from './helpers/redis-server.js'

interface Raw { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }

/** A real HTTP GET that returns the bytes as sent (no transparent decompression). */
function get (app: FastifyInstance, path: string, encoding?: string): Promise<Raw> {
  const { port } = app.server.address() as AddressInfo
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: encoding === undefined ? {} : { 'accept-encoding': encoding } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    req.end()
  })
}

function decoded (res: Raw): string {
  const enc = res.headers['content-encoding']
  return (enc === 'gzip' ? gunzipSync(res.body) : enc === 'br' ? brotliDecompressSync(res.body) : res.body).toString()
}

const sizes = { small: 200, medium: 8_000, large: 120_000 }
const stores: Array<[string, (t: Tap.Test) => Promise<ServerCacheOptions>]> = [
  ['memory', async () => ({})],
  ['redis', async (t) => ({ backend: 'redis', redis: { url: (await startRedisServer(t)).url } })],
]

for (const [storeName, storeOptions] of stores) {
  for (const order of ['compress first', 'cache first'] as const) {
    t.test(`${storeName}, ${order}: every body size is stored once, and each client gets its own encoding`, async (t) => {
      const app = Fastify()
      t.teardown(() => app.close())
      const cache = async () => app.register(serverCache, { keyPrefix: `cz-${Math.random().toString(36).slice(2)}`, ...await storeOptions(t) })
      if (order === 'compress first') { await app.register(compress); await cache() } else { await cache(); await app.register(compress) }
      const calls: Record<string, number> = {}
      app.get('/doc/:size', { config: { cache: { keyPrefix: 'doc', resourceIdName: 'size', resourceIdType: 'string' } } }, async (request) => {
        const size = (request.params as { size: keyof typeof sizes }).size
        calls[size] = (calls[size] ?? 0) + 1
        return { size, filler: 'x'.repeat(sizes[size]) }
      })
      await app.listen({ port: 0, host: '127.0.0.1' })
      for (const size of Object.keys(sizes) as Array<keyof typeof sizes>) {
        const expected = JSON.stringify({ size, filler: 'x'.repeat(sizes[size]) })
        const outcomes: string[] = []
        // Twice over: a gzip client may fill, identity and br clients then hit, and so on.
        for (const encoding of ['gzip', 'br', undefined, 'gzip', 'br', undefined]) {
          const res = await get(app, `/doc/${size}`, encoding)
          t.equal(res.status, 200)
          t.equal(decoded(res), expected, `${size} body for ${encoding ?? 'identity'}`)
          const wantEncoding = size === 'small' || encoding === undefined ? undefined : encoding
          t.equal(res.headers['content-encoding'], wantEncoding, `${size}: content-encoding for ${encoding ?? 'identity'} (${res.headers['x-cache']})`)
          if (wantEncoding !== undefined) t.match(String(res.headers.vary), /accept-encoding/i, 'vary names accept-encoding')
          outcomes.push(String(res.headers['x-cache']))
        }
        t.same(outcomes, ['MISS', 'HIT', 'HIT', 'HIT', 'HIT', 'HIT'], `${size}: stored once, from the first client`)
        t.equal(calls[size], 1, `${size}: one handler call`)
      }
    })
  }
}
