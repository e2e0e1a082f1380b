import t from 'tap'
import { compileGlob, escapeGlob, literalPrefix } from '../lib/glob.js'
import { PATTERN_CASES, PATTERN_KEYS } from './helpers/store-suite.js'

// Expected values are Redis 7's answers to KEYS/SCAN MATCH for the same pattern and key.

t.test('the shared pattern table', async (t) => {
  for (const { pattern, matches } of PATTERN_CASES) {
    const match = compileGlob(pattern)
    const matched = PATTERN_KEYS.filter((key) => match(key))
    t.same(matched, PATTERN_KEYS.filter((key) => matches.includes(key)), JSON.stringify(pattern))
  }
})

t.test('the table behind an escaped prefix full of glob characters', async (t) => {
  const prefix = 'fc[1]*?\\:'
  for (const { pattern, matches } of PATTERN_CASES) {
    const match = compileGlob(escapeGlob(prefix) + pattern)
    const matched = PATTERN_KEYS.filter((key) => match(prefix + key))
    t.same(matched, PATTERN_KEYS.filter((key) => matches.includes(key)), JSON.stringify(pattern))
    t.notOk(PATTERN_KEYS.some((key) => match('fc1xx:' + key)), `${JSON.stringify(pattern)} prefix is literal`)
  }
})

t.test('edge cases', async (t) => {
  const cases: Array<[pattern: string, key: string, expected: boolean]> = [
    ['', '', true],
    ['', 'a', false],
    ['*', '', true], // SCAN/KEYS skip matching for `*`
    ['**', '', false], // stringmatchlen never matches an empty key otherwise
    ['?', '', false],
    ['**', 'abc', true],
    ['[', '[', false], // a lone `[` is an empty, unclosed class
    ['[^', 'x', true],
    ['[\\', '\\', true],
    ['\\', '\\', true],
    ['[a-\\]]', '_]', true], // the range `\`..`a`, then a literal `]`
    ['[a-\\]]', '_', false],
    ['a?c', 'a\nc', true],
    ['*', 'line\nbreak', true],
    ['ключ:*', 'ключ:1', true],
    ['ключ:?', 'ключ:ы', false],
    ['ключ:??', 'ключ:ы', true],
    ['*🔑', 'key 🔑', true],
    ['????', '🔑', true],
    ['\ud800', '\ufffd', true], // a lone surrogate reaches Redis as U+FFFD
    // Range bounds compare as signed bytes: 0xC3 (é's first byte) sorts before `a`.
    ['[a-é]*', 'A', true],
    ['[a-é]*', 'é', true],
    ['[a-é]*', '€', true],
    ['[a-é]*', 'b', false],
    ['[a-é]*', '\u0080', false],
    ['*a'.repeat(1000), 'a'.repeat(1200), true],
    ['*a'.repeat(1001), 'a'.repeat(1200), false], // Redis gives up past 1000 nested stars
    ['*a'.repeat(1001) + '*', 'a'.repeat(1200), false],
    ['a*'.repeat(1001), 'a'.repeat(1200), true], // the trailing star does not nest
  ]
  for (const [pattern, key, expected] of cases) {
    const label = `${JSON.stringify(pattern.length > 40 ? pattern.slice(0, 8) + '…' : pattern)} ~ ${JSON.stringify(key.length > 40 ? key.slice(0, 8) + '…' : key)}`
    t.equal(compileGlob(pattern)(key), expected, label)
  }
})

t.test('pathological patterns stay fast', async (t) => {
  const key = 'a'.repeat(20_000)
  const start = performance.now()
  t.equal(compileGlob('*a'.repeat(40) + 'b')(key), false)
  t.equal(compileGlob('*a?'.repeat(40) + '[b]*')(key), false)
  t.equal(compileGlob('*a*a*a*a*a*a*a*a')(key), true)
  t.ok(performance.now() - start < 500, 'no backtracking blow-up')
})

t.test('escapeGlob', async (t) => {
  t.equal(escapeGlob('a*b?c[d]e\\f'), 'a\\*b\\?c\\[d\\]e\\\\f')
  t.equal(escapeGlob('plain ^-!{}:'), 'plain ^-!{}:', 'other characters untouched')
  t.equal(escapeGlob(''), '')
})

t.test('escapeGlob round trip on adversarial strings', async (t) => {
  const alphabet = ['*', '?', '[', ']', '\\', '^', '-', '!', 'a', 'b', ':', ' ', '\n', 'é', '🔑', '\u0000']
  let seed = 42
  const random = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return (seed >>> 8) % n
  }
  const samples = ['', '\\', '*', '[', '[]', '\\\\', '[^]', 'a\\', '\\*', '[a-z]*?']
  while (samples.length < 2000) {
    samples.push(Array.from({ length: 1 + random(12) }, () => alphabet[random(alphabet.length)]).join(''))
  }
  let failures = 0
  for (const [i, s] of samples.entries()) {
    const match = compileGlob(escapeGlob(s))
    const other = samples[(i * 7 + 1) % samples.length]
    const ok = match(s) && !match(s + 'x') && !match('x' + s) && (s === '' || !match(s.slice(0, -1))) &&
      match(other) === (other === s)
    if (!ok) {
      failures++
      t.fail(`round trip of ${JSON.stringify(s)}`)
    }
  }
  t.equal(failures, 0, `${samples.length} strings match only themselves`)
})

t.test('literalPrefix', async (t) => {
  const cases: Array<[string, string]> = [
    ['', ''],
    ['plain', 'plain'],
    ['abc*', 'abc'],
    ['a?', 'a'],
    ['[a]bc', ''],
    ['a\\*b*', 'a*b'],
    ['a\\\\b*', 'a\\b'],
    ['ns:\\[x\\]:*', 'ns:[x]:'],
    ['a\\', 'a\\'], // a trailing backslash is literal
    ['é:*', 'é:'],
    ['ab\ud800c*', 'ab'], // stop before a lone surrogate (sent to Redis as U+FFFD)
  ]
  for (const [pattern, prefix] of cases) t.equal(literalPrefix(pattern), prefix, JSON.stringify(pattern))
  for (const { pattern, matches } of PATTERN_CASES) {
    const prefix = literalPrefix(pattern)
    t.ok(matches.every((key) => key.startsWith(prefix)), `every match of ${JSON.stringify(pattern)} starts with the prefix`)
  }
})
