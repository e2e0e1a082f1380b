import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import { sentNow } from './batch-writes.js'
import { newGuard } from './guards.js'

/**
 * KEYS: each read's keys, one read after another (its entry, the entry's guard, its tags'
 * guards). ARGV: the tag guards' TTL, a new guard, then per read its key count and its key
 * guard's TTL. Reads every key and sets each missing guard to the new one: what `prepare`
 * would do next on a miss, in the same round trip. One script, so atomic: a guard it returns is
 * the one in place. A key asked for twice is set once and reads the same guard both times.
 * A guard the server refuses to create (out of memory) is left missing, not raised: the other
 * reads of the batch (hits among them) are answered, and that miss's prepare() fails on its own.
 */
const READ_CREATING = `local v = redis.call('MGET', unpack(KEYS))
local first = 0
for r = 3, #ARGV, 2 do
  local n = tonumber(ARGV[r])
  for i = first + 2, first + n do
    if not v[i] and not redis.pcall('SET', KEYS[i], ARGV[2], 'EX', i == first + 2 and ARGV[r + 1] or ARGV[1]).err then
      v[i] = ARGV[2]
    end
  end
  first = first + n
end
return v`
const READ_CREATING_SHA = createHash('sha1').update(READ_CREATING).digest('hex')
/** Keys per script call: Redis' Lua unpacks KEYS onto a C stack of 8,000 slots. */
const MAX_KEYS = 2000

interface Pending {
  keys: readonly string[]
  guardTtl: number
  resolve: (values: Array<Buffer | null>) => void
  reject: (err: unknown) => void
}

/**
 * Lookups of every request that arrived in one poll phase, read in one script call (or a few,
 * past MAX_KEYS) at the end of it. Per read Redis then runs a few MGET keys instead of a whole
 * script call, and ioredis builds and parses one command instead of one per request: on a
 * many-keys load it was Redis' CPU, on the same two cores as the server, that capped hits.
 * What it adds to a lone request is the rest of one loop turn, as batchWrites does.
 */
export class BatchedReads {
  readonly #redis: Redis
  readonly #tagTtl: number
  #queue: Pending[] = []
  #scheduled = false

  constructor (redis: Redis, tagGuardTtl: number) {
    this.#redis = redis
    this.#tagTtl = tagGuardTtl
  }

  /** The values of `keys` (entry first, then guards), each missing guard created with `guardTtl` (s). */
  read (keys: readonly string[], guardTtl: number): Promise<Array<Buffer | null>> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ keys, guardTtl, resolve, reject })
      if (this.#scheduled) return
      this.#scheduled = true
      setImmediate(this.#flush)
    })
  }

  readonly #flush = (): void => {
    const queue = this.#queue
    this.#queue = []
    this.#scheduled = false
    // Whatever these reads answer now comes after every request handled so far (Engine#sharedRead).
    sentNow()
    let start = 0
    let keys = 0
    for (let i = 0; i < queue.length; i++) {
      if (keys > 0 && keys + queue[i].keys.length > MAX_KEYS) {
        this.#send(queue.slice(start, i))
        start = i
        keys = 0
      }
      keys += queue[i].keys.length
    }
    this.#send(start === 0 ? queue : queue.slice(start))
  }

  #send (reads: Pending[]): void {
    const keys: string[] = []
    const args: Array<string | number> = [this.#tagTtl, newGuard()]
    for (const read of reads) {
      for (const key of read.keys) keys.push(key)
      args.push(read.keys.length, read.guardTtl)
    }
    this.#call(keys, args).then((values) => {
      let at = 0
      for (const read of reads) {
        read.resolve(values.slice(at, at + read.keys.length))
        at += read.keys.length
      }
    }, (err: unknown) => {
      for (const read of reads) read.reject(err)
    })
  }

  async #call (keys: string[], args: Array<string | number>): Promise<Array<Buffer | null>> {
    try {
      return await this.#redis.callBuffer('evalsha', READ_CREATING_SHA, keys.length, ...keys, ...args) as Array<Buffer | null>
    } catch (err) {
      // A restarted or flushed server has lost the script: EVAL loads it again.
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
      return await this.#redis.callBuffer('eval', READ_CREATING, keys.length, ...keys, ...args) as Array<Buffer | null>
    }
  }
}
