// The variants' servers: one Node process each (benchmarks/servers/*), and HTTP requests to them.

import { spawn } from 'node:child_process'
import http from 'node:http'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { track } from './children.js'
import { BENCHMARKS, ROOT, config } from './config.js'
import { withDistRetry } from './dist.js'

/** One variant's server: a separate Node process on a free port (it reports the port). */
export function startServer (variant, env, profileDir) {
  return withDistRetry(() => spawnServer(variant, env, profileDir))
}

async function spawnServer (variant, env, profileDir) {
  const nodeArgs = profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir]
  const child = track(spawn(process.execPath, [...nodeArgs, join(BENCHMARKS, 'servers', variant.script)], {
    cwd: ROOT,
    env: { ...process.env, ...env, KEY_PREFIX: `bench-${variant.name}-${process.pid}`, ...(config.compression ? {} : { BENCH_COMPRESSION: '0' }), ...variant.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  }), variant.name)
  let stderr = ''
  child.stderr.on('data', (chunk) => { stderr = (stderr + chunk).slice(-4000) })
  const ready = new Promise((resolve, reject) => {
    let out = ''
    const onData = (chunk) => {
      out += chunk
      const line = out.split('\n').find((l) => l.startsWith('{'))
      if (line === undefined) return
      child.stdout.off('data', onData)
      try {
        resolve(JSON.parse(line))
      } catch (err) {
        reject(err)
      }
    }
    child.stdout.on('data', onData)
    child.once('exit', (code, signal) => reject(new Error(`server ${variant.name} exited (${code ?? signal}) before it was ready:\n${stderr}`)))
  })
  const timeout = sleep(30_000).then(() => { throw new Error(`server ${variant.name} not ready within 30 s:\n${stderr}`) })
  const { port } = await Promise.race([ready, timeout])
  child.stdout.resume()
  return { child, port, stderr: () => stderr }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 })

export function get (port, path) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, timeout: 10_000 }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timeout`)))
    req.on('error', reject)
  })
}

export async function calls (port) {
  const res = await get(port, '/__calls')
  if (res.status !== 200) throw new Error(`/__calls answered ${res.status}`)
  return JSON.parse(res.body)
}
