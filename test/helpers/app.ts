import Fastify, { type FastifyInstance } from 'fastify'
import serverCache, { type ServerCacheOptions } from '../../index.js'

export interface LogLine { level: number, msg: string, [key: string]: unknown }

/** A Fastify app whose log lines are kept for assertions (what an operator would read). */
export function logged (): { app: FastifyInstance, logs: LogLine[] } {
  const logs: LogLine[] = []
  const app = Fastify({
    logger: { level: 'debug', stream: { write: (line: string) => { logs.push(JSON.parse(line)) } } },
  })
  return { app, logs }
}

/** An app with the plugin registered; closed by the caller (t.teardown(() => app.close())). */
export async function withCache (options: ServerCacheOptions = {}): Promise<{ app: FastifyInstance, logs: LogLine[] }> {
  const { app, logs } = logged()
  await app.register(serverCache, { keyPrefix: `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`, ...options })
  return { app, logs }
}

export const WARN = 40
export const ERROR = 50
