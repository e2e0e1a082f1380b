import { randomBytes, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { PatternMatchingNotSupportedError } from '../../lib/errors.js'
import { escapeGlob } from '../../lib/glob.js'
import type { Store } from '../../lib/stores/store.js'

// One conformance suite for every backend: a store that passes it behaves like the others as
// far as the layer above can tell. The expected results below are what Redis itself answers
// (the pattern table was checked against a real redis-server), so the memory store running it
// proves its glob matching is Redis's.

/** What `setup` resolves: a fresh, connected store and the key prefix to write under. */
export interface StoreUnderTest {
  store: Store
  /** Every key the suite writes starts with `${keyPrefix}:<uuid>:`. */
  keyPrefix: string
  /** Runs after the suite has closed `store` (e.g. to stop a server). */
  teardown?: () => Promise<void>
}

export interface ConformanceOptions {
  /** Whether the store matches glob patterns (false: deletePattern must reject). */
  patterns: boolean
}

/** Keys (after a per-case prefix) that every pattern case is matched against. */
export const PATTERN_KEYS: readonly string[] = [
  'a', 'b', 'c', 'd', '^', '-', ']', '\\',
  'ab', 'ac', 'é', 'a\\',
  'abc', 'abd', 'axc', 'a c', 'a\nc', 'a*c', 'a?c', 'a\\c', 'a[b]c',
  'user_42_widgets:1', 'user_42_widgets:2', 'user_420_widgets:1', 'user_4_widgets:1',
]

const ONE_BYTE = ['a', 'b', 'c', 'd', '^', '-', ']', '\\']
const A_STAR_C = ['ac', 'abc', 'axc', 'a c', 'a\nc', 'a*c', 'a?c', 'a\\c', 'a[b]c']

/** Glob pattern → the PATTERN_KEYS it matches, per Redis `SCAN MATCH`. */
export const PATTERN_CASES: ReadonlyArray<{ pattern: string, matches: readonly string[] }> = [
  { pattern: '*', matches: PATTERN_KEYS },
  { pattern: 'a*', matches: ['a', 'ab', 'ac', 'a\\', 'abc', 'abd', 'axc', 'a c', 'a\nc', 'a*c', 'a?c', 'a\\c', 'a[b]c'] },
  { pattern: '*c', matches: ['c', ...A_STAR_C] },
  { pattern: 'a*c', matches: A_STAR_C },
  { pattern: 'a**c', matches: A_STAR_C },
  { pattern: '*a*b*', matches: ['ab', 'abc', 'abd', 'a[b]c'] },
  { pattern: '*\n*', matches: ['a\nc'] },
  // Redis matches bytes: `?` and `[...]` take one byte of the UTF-8 key, `é` has two.
  { pattern: '?', matches: ONE_BYTE },
  { pattern: '??', matches: ['ab', 'ac', 'é', 'a\\'] },
  { pattern: 'é', matches: ['é'] },
  { pattern: '[é]', matches: [] },
  { pattern: '[é][é]', matches: ['é'] },
  { pattern: 'a?c', matches: ['abc', 'axc', 'a c', 'a\nc', 'a*c', 'a?c', 'a\\c'] },
  { pattern: '[abc]', matches: ['a', 'b', 'c'] },
  { pattern: '[^a]', matches: ONE_BYTE.filter((key) => key !== 'a') },
  { pattern: '[a-c]', matches: ['a', 'b', 'c'] },
  { pattern: '[c-a]', matches: ['a', 'b', 'c'] },
  { pattern: 'a[bx]c', matches: ['abc', 'axc'] },
  { pattern: 'a[^b]c', matches: ['axc', 'a c', 'a\nc', 'a*c', 'a?c', 'a\\c'] },
  { pattern: 'a[*?]c', matches: ['a*c', 'a?c'] },
  { pattern: 'a\\*c', matches: ['a*c'] },
  { pattern: 'a\\?c', matches: ['a?c'] },
  { pattern: 'a\\[b]c', matches: ['a[b]c'] },
  { pattern: 'a\\\\c', matches: ['a\\c'] },
  { pattern: '\\a\\b\\c', matches: ['abc'] },
  { pattern: 'a\\', matches: ['a\\'] }, // a trailing backslash is a literal backslash
  { pattern: '[\\]]', matches: [']'] },
  { pattern: '[\\\\]', matches: ['\\'] },
  { pattern: '[-]', matches: ['-'] },
  { pattern: '[a-]', matches: ['a', '^', ']'] }, // the range `]`..`a`, class left open
  { pattern: '[]a]', matches: [] }, // `[]` is an empty class, not a literal `]`
  { pattern: '[^]', matches: ONE_BYTE },
  { pattern: '[!a]', matches: ['a'] }, // `!` does not negate in Redis
  { pattern: '[ab', matches: ['a', 'b'] }, // an unclosed class runs to the end
  { pattern: 'a[', matches: [] },
  { pattern: 'user_42_widgets:*', matches: ['user_42_widgets:1', 'user_42_widgets:2'] },
  { pattern: 'user_4?_widgets:*', matches: ['user_42_widgets:1', 'user_42_widgets:2'] },
  { pattern: '*_widgets:1', matches: ['user_42_widgets:1', 'user_420_widgets:1', 'user_4_widgets:1'] },
  { pattern: 'nomatch*', matches: [] },
  // Keys full of glob characters, made literal with escapeGlob: only the key itself matches.
  ...['a*c', 'a?c', 'a[b]c', 'a\\c', 'a\\', '\\', ']', '^'].map((key) => ({ pattern: escapeGlob(key), matches: [key] })),
]

/** Keys a store must keep apart and round-trip (relative to a test prefix). */
export const AWKWARD_KEYS: readonly string[] = [
  'ключ', '键', '🔑 key', '\u00e9', 'e\u0301', 'with space', ' padded ', 'line\nbreak', 'crlf\r\n',
  'tab\there', 'nul\u0000byte', 'x'.repeat(300), 'x'.repeat(299) + 'y', ':', 'glob*?[chars]\\', '%s%d',
]

/**
 * Registers the Store conformance tests as one tap subtest named after `name`. `setup` is called
 * twice (the shared store, and a fresh one for the close test) and must resolve a new, connected
 * store each time; the suite closes it, then runs `teardown`.
 */
export function storeConformance (
  name: string,
  setup: () => Promise<StoreUnderTest>,
  opts: ConformanceOptions
): void {
  t.test(`${name}: Store conformance`, async (t) => {
    const { store, keyPrefix, teardown } = await setup()
    t.teardown(async () => {
      await store.close()
      await teardown?.()
    })
    const scope = (t: Test): string => {
      const prefix = `${keyPrefix}:${randomUUID()}:`
      t.teardown(() => store.clear(prefix))
      return prefix
    }
    const sameBytes = (t: Test, actual: Buffer | undefined, expected: Buffer, message: string): void => {
      t.ok(Buffer.isBuffer(actual) && actual.equals(expected), message)
    }

    t.test('get of a missing key resolves undefined', async (t) => {
      t.equal(await store.get(`${scope(t)}missing`), undefined)
    })

    t.test('values are binary safe', async (t) => {
      const p = scope(t)
      const values = {
        everyByte: Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
        empty: Buffer.alloc(0),
        // 1 MB, not 1 MiB: Memcached's default item limit (1 MiB) also counts key and header.
        large: randomBytes(1_000_000),
      }
      for (const [key, value] of Object.entries(values)) await store.set(p + key, value, 60)
      for (const [key, value] of Object.entries(values)) sameBytes(t, await store.get(p + key), value, key)
    })

    t.test('set overwrites value and expiry', async (t) => {
      const key = `${scope(t)}k`
      await store.set(key, Buffer.from('one'), 500)
      await store.set(key, Buffer.from('two'), 50)
      sameBytes(t, await store.get(key), Buffer.from('two'), 'second value wins')
      const ttl = await store.ttl(key)
      t.ok(ttl > 0 && ttl <= 50, `ttl ${ttl} is the second one`)
    })

    t.test('add stores only when absent', async (t) => {
      const key = `${scope(t)}k`
      t.equal(await store.add(key, Buffer.from('first'), 60), true, 'missing: stored')
      t.equal(await store.add(key, Buffer.from('second'), 60), false, 'existing: refused')
      sameBytes(t, await store.get(key), Buffer.from('first'), 'first value kept')
      const ttl = await store.ttl(key)
      t.ok(ttl > 0 && ttl <= 60, `add set the expiry (${ttl})`)
    })

    t.test('delete counts the keys that existed', async (t) => {
      const p = scope(t)
      await Promise.all(['k1', 'k2', 'k3'].map((k) => store.set(p + k, Buffer.from(k), 60)))
      t.equal(await store.delete([`${p}k1`, `${p}k2`, `${p}missing`]), 2)
      t.equal(await store.exists(`${p}k1`), false)
      t.equal(await store.exists(`${p}k3`), true, 'other keys untouched')
      t.equal(await store.delete([]), 0, 'no keys')
      t.equal(await store.delete([`${p}k3`, `${p}k3`]), 1, 'a key listed twice counts once')
      t.equal(await store.delete([`${p}k3`]), 0, 'already gone')
    })

    t.test('exists', async (t) => {
      const key = `${scope(t)}k`
      t.equal(await store.exists(key), false)
      await store.set(key, Buffer.from('v'), 60)
      t.equal(await store.exists(key), true)
    })

    t.test('ttl and expire', async (t) => {
      const p = scope(t)
      t.equal(await store.ttl(`${p}missing`), -2, 'missing: -2')
      await store.set(`${p}k`, Buffer.from('v'), 100)
      const ttl = await store.ttl(`${p}k`)
      t.ok(ttl >= 95 && ttl <= 100, `ttl in seconds (${ttl})`)
      t.equal(await store.expire(`${p}missing`, 10), false, 'expire of a missing key')
      t.equal(await store.exists(`${p}missing`), false, 'expire does not create the key')
      t.equal(await store.expire(`${p}k`, 500), true)
      const extended = await store.ttl(`${p}k`)
      t.ok(extended >= 495 && extended <= 500, `new ttl (${extended})`)
      sameBytes(t, await store.get(`${p}k`), Buffer.from('v'), 'value kept')
    })

    // The only test that waits: 2.2 s covers Memcached's whole-second expiry clock.
    t.test('expired keys are gone', async (t) => {
      const p = scope(t)
      await store.set(`${p}short`, Buffer.from('v'), 1)
      await store.set(`${p}shortened`, Buffer.from('v'), 100)
      t.equal(await store.expire(`${p}shortened`, 1), true)
      t.equal(await store.add(`${p}added`, Buffer.from('v'), 1), true)
      await store.set(`${p}long`, Buffer.from('v'), 100)
      await sleep(2200)
      t.equal(await store.get(`${p}short`), undefined, 'set with ttl 1')
      t.equal(await store.exists(`${p}short`), false)
      t.equal(await store.ttl(`${p}short`), -2)
      t.equal(await store.get(`${p}shortened`), undefined, 'expire to 1 s')
      t.equal(await store.delete([`${p}shortened`, `${p}added`]), 0, 'expired keys do not count as deleted')
      t.equal(await store.expire(`${p}added`, 10), false, 'expire of an expired key')
      t.equal(await store.add(`${p}short`, Buffer.from('again'), 60), true, 'add over an expired key')
      sameBytes(t, await store.get(`${p}short`), Buffer.from('again'), 'new value')
      sameBytes(t, await store.get(`${p}long`), Buffer.from('v'), 'unexpired key survives')
    })

    t.test('awkward keys round-trip and stay distinct', async (t) => {
      const p = scope(t)
      await Promise.all(AWKWARD_KEYS.map((key, i) => store.set(p + key, Buffer.from(String(i)), 60)))
      for (const [i, key] of AWKWARD_KEYS.entries()) {
        const label = JSON.stringify(key.length > 20 ? `${key.slice(0, 10)}…(${key.length})` : key)
        sameBytes(t, await store.get(p + key), Buffer.from(String(i)), `get ${label}`)
        t.equal(await store.exists(p + key), true, `exists ${label}`)
        t.ok(await store.ttl(p + key) > 0, `ttl ${label}`)
      }
      for (const [i, key] of AWKWARD_KEYS.entries()) {
        const deleted = opts.patterns
          ? await store.deletePattern(escapeGlob(p + key))
          : await store.delete([p + key])
        t.equal(deleted, 1, `delete #${i}`)
        t.equal(await store.exists(p + key), false, `gone #${i}`)
      }
    })

    if (opts.patterns) {
      t.test('deletePattern matches like Redis', async (t) => {
        const p = scope(t)
        for (const [i, { pattern, matches }] of PATTERN_CASES.entries()) {
          const casePrefix = `${p}${i}:`
          await Promise.all(PATTERN_KEYS.map((key) => store.set(casePrefix + key, Buffer.from(key), 60)))
          const label = JSON.stringify(pattern)
          t.equal(await store.deletePattern(escapeGlob(casePrefix) + pattern), matches.length, `${label} count`)
          const left = await Promise.all(PATTERN_KEYS.map((key) => store.exists(casePrefix + key)))
          const deleted = PATTERN_KEYS.filter((_, k) => !left[k])
          t.same(deleted, PATTERN_KEYS.filter((key) => matches.includes(key)), `${label} deleted exactly`)
        }
      })
    } else {
      t.test('deletePattern rejects with PatternMatchingNotSupportedError', async (t) => {
        const error = await store.deletePattern(`${escapeGlob(scope(t))}*`).catch((err: unknown) => err)
        t.type(error, PatternMatchingNotSupportedError)
      })
    }

    t.test('clear removes only keys under the prefix', async (t) => {
      const p = scope(t)
      const keys = ['ns:1', 'ns:deep:2', 'ns2:1', 'ns', 'n', 'other:ns:1', 'x*:1', 'xy:1', 'x[y]:1']
      await Promise.all(keys.map((key) => store.set(p + key, Buffer.from(key), 60)))
      await store.clear(`${p}ns:`)
      await store.clear(`${p}x*:`) // glob characters in a prefix are literal
      await store.clear(`${p}x[y]:`)
      const survivors: string[] = []
      for (const key of keys) if (await store.exists(p + key)) survivors.push(key)
      t.same(survivors, ['ns2:1', 'ns', 'n', 'other:ns:1', 'xy:1'])
    })

    t.test('ping', async (t) => {
      t.equal(await store.ping(), true)
    })

    t.test('parallel calls stay consistent', async (t) => {
      const p = scope(t)
      const n = 200
      await Promise.all(Array.from({ length: n }, (_, i) => store.set(`${p}${i}`, Buffer.from(`v${i}`), 60)))
      const values = await Promise.all(Array.from({ length: n }, (_, i) => store.get(`${p}${i}`)))
      t.ok(values.every((value, i) => value?.toString() === `v${i}`), 'every get sees its own set')
      const added = await Promise.all(Array.from({ length: 20 }, (_, i) => store.add(`${p}race`, Buffer.from(`w${i}`), 60)))
      t.equal(added.filter(Boolean).length, 1, 'exactly one add wins')
      t.equal((await store.get(`${p}race`))?.toString(), `w${added.indexOf(true)}`, 'the winner is stored')
    })

    t.test('close resolves', async (t) => {
      const fresh = await setup()
      t.teardown(async () => await fresh.teardown?.())
      const prefix = `${fresh.keyPrefix}:${randomUUID()}:`
      await fresh.store.set(`${prefix}k`, Buffer.from('v'), 60)
      await fresh.store.clear(prefix)
      await t.resolves(fresh.store.close())
    })
  })
}
