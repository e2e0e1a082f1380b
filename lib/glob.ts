// Redis glob patterns evaluated in process, so that the memory store deletes exactly the keys
// `SCAN MATCH` would. Redis matches bytes, not characters: `?` and `[...]` consume one byte of
// the key's UTF-8 encoding (so `?` does not match `é`, but `??` does). We therefore parse the
// pattern's UTF-8 bytes exactly as Redis's `stringmatchlen` (util.c) does and match keys as
// "byte strings" (one char per byte), which for ASCII keys is the key itself.

const ANY = -1
const STAR = -2
/** A literal byte (0..255), ANY (`?`), STAR (`*`) or a 256-entry byte table (`[...]`). */
type Token = number | Uint8Array

/** A star-free run of tokens: matches exactly `length` bytes. */
interface Segment {
  length: number
  at: (bytes: string, pos: number) => boolean
  /** First position >= from where the segment matches, or -1. */
  find: (bytes: string, from: number) => number
}

// Redis guards its recursion with `nesting > 1000`: a pattern with more non-trailing `*` groups
// than that matches nothing there, so it must match nothing here either.
const MAX_STAR_NESTING = 1000
const NON_ASCII = /[\u0080-\uffff]/

/**
 * Compile a Redis glob pattern into a predicate over keys, with the semantics of Redis's
 * `stringmatchlen` (case-sensitive) as used by `SCAN MATCH`: `*`, `?`, `[abc]`, `[^abc]`, `[a-c]`
 * (reversed ranges too), `\x` escapes inside and outside brackets, a trailing `\` is literal,
 * an unclosed `[` runs to the end of the pattern, and the whole key must match. Like `SCAN`,
 * the pattern `*` also matches the empty key. Compile once, call per key.
 */
export function compileGlob (pattern: string): (key: string) => boolean {
  if (pattern === '*') return () => true
  const tokens = tokenize(Buffer.from(pattern, 'utf8'))
  const byteMatch = compileTokens(tokens)
  // Cheap rejection of most keys in a scan: an anchored RegExp beats startsWith in V8.
  const prefix = literalPrefix(pattern)
  const prefixTest = prefix === '' ? undefined : new RegExp('^' + unitsSource(prefix))
  return (key) => {
    if (prefixTest !== undefined && !prefixTest.test(key)) return false
    // stringmatchlen never enters its loop for an empty key: only the empty pattern matches it.
    if (key.length === 0) return tokens.length === 0
    return byteMatch(NON_ASCII.test(key) ? Buffer.from(key, 'utf8').toString('latin1') : key)
  }
}

/**
 * Escape `*`, `?`, `[`, `]` and `\` so that `value` matches only itself. Use it for anything
 * that is not meant to be a pattern (user-supplied values, key prefixes).
 */
export function escapeGlob (value: string): string {
  return value.replace(/[*?[\]\\]/g, '\\$&')
}

/**
 * The literal text every key matching `pattern` starts with (escapes resolved), so that a store
 * can skip other keys with `key.startsWith(prefix)` before running the matcher.
 */
export function literalPrefix (pattern: string): string {
  let prefix = ''
  for (let i = 0; i < pattern.length; i++) {
    let ch = pattern[i]
    if (ch === '*' || ch === '?' || ch === '[') break
    if (ch === '\\' && i + 1 < pattern.length) ch = pattern[++i]
    // A lone surrogate is sent to Redis as U+FFFD's bytes, so keys can match byte-wise without
    // starting with the same UTF-16 string; stop before anything that could be involved.
    const code = ch.charCodeAt(0)
    if ((code >= 0xd800 && code <= 0xdfff) || code === 0xfffd) break
    prefix += ch
  }
  return prefix
}

/** Mirrors the `switch (pattern[0])` of stringmatchlen; parsing never depends on the key. */
function tokenize (p: Buffer): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < p.length) {
    const c = p[i]
    if (c === 0x2a /* * */) {
      if (tokens[tokens.length - 1] !== STAR) tokens.push(STAR)
      i++
    } else if (c === 0x3f /* ? */) {
      tokens.push(ANY)
      i++
    } else if (c === 0x5b /* [ */) {
      i = parseClass(p, i + 1, tokens)
    } else if (c === 0x5c /* \ */ && i + 1 < p.length) {
      tokens.push(p[i + 1])
      i += 2
    } else {
      tokens.push(c)
      i++
    }
  }
  return tokens
}

/** Parses a bracket class starting after `[`; pushes its table, returns the next index. */
function parseClass (p: Buffer, i: number, tokens: Token[]): number {
  const table = new Uint8Array(256)
  const negate = i < p.length && p[i] === 0x5e /* ^ */
  if (negate) i++
  // Same branch order as Redis: escape, `]`, end of pattern (unclosed: the class ends there),
  // range (`x-y` needs three bytes left, so `[a-]` is the range `]`..`a` and stays open), byte.
  while (i < p.length) {
    const left = p.length - i
    if (p[i] === 0x5c && left >= 2) {
      table[p[i + 1]] = 1
      i += 2
    } else if (p[i] === 0x5d /* ] */) {
      i++
      break
    } else if (left >= 3 && p[i + 1] === 0x2d /* - */) {
      markRange(table, p[i], p[i + 2])
      i += 3
    } else {
      table[p[i]] = 1
      i++
    }
  }
  if (negate) for (let b = 0; b < 256; b++) table[b] ^= 1
  tokens.push(table)
  return i
}

/** Redis compares range bounds as C `char`, which is signed on x86-64: bytes >= 0x80 sort first. */
function markRange (table: Uint8Array, from: number, to: number): void {
  const signed = (b: number): number => (b >= 0x80 ? b - 0x100 : b)
  const lo = Math.min(signed(from), signed(to))
  const hi = Math.max(signed(from), signed(to))
  for (let b = 0; b < 256; b++) {
    const s = signed(b)
    if (s >= lo && s <= hi) table[b] = 1
  }
}

/**
 * Every non-star token consumes exactly one byte, so the pattern is star-separated fixed-length
 * segments: anchor the first and last, place each middle one at its leftmost fit. That is
 * O(key × pattern) at worst, unlike a backtracking RegExp of the whole pattern.
 */
function compileTokens (tokens: Token[]): (bytes: string) => boolean {
  const runs: Token[][] = [[]]
  let stars = 0
  for (const token of tokens) {
    if (token === STAR) {
      runs.push([])
      stars++
    } else {
      runs[runs.length - 1].push(token)
    }
  }
  const trailingStar = tokens[tokens.length - 1] === STAR
  if (stars - (trailingStar ? 1 : 0) > MAX_STAR_NESTING) return () => false

  const segments = runs.map(compileSegment)
  const first = segments[0]
  if (segments.length === 1) return (bytes) => bytes.length === first.length && first.at(bytes, 0)

  const last = segments[segments.length - 1]
  const middle = segments.slice(1, -1)
  const minLength = segments.reduce((sum, segment) => sum + segment.length, 0)
  return (bytes) => {
    if (bytes.length < minLength || !first.at(bytes, 0)) return false
    const end = bytes.length - last.length
    if (!last.at(bytes, end)) return false
    let pos = first.length
    for (const segment of middle) {
      const found = segment.find(bytes, pos)
      if (found < 0 || found + segment.length > end) return false
      pos = found + segment.length
    }
    return true
  }
}

function compileSegment (run: Token[]): Segment {
  const length = run.length
  const source = run.map(tokenSource).join('')
  const sticky = new RegExp(source, 'y')
  const global = new RegExp(source, 'g')
  return {
    length,
    at: (bytes, pos) => {
      sticky.lastIndex = pos
      return sticky.test(bytes)
    },
    find: (bytes, from) => {
      global.lastIndex = from
      return global.test(bytes) ? global.lastIndex - length : -1
    },
  }
}

const hex = (b: number): string => '\\x' + b.toString(16).padStart(2, '0')

/** RegExp source matching `text` literally, one UTF-16 unit at a time. */
function unitsSource (text: string): string {
  let source = ''
  for (let i = 0; i < text.length; i++) source += '\\u' + text.charCodeAt(i).toString(16).padStart(4, '0')
  return source
}

/** RegExp source matching one byte-char; keys are byte strings, so only \x00-\xff occur. */
function tokenSource (token: Token): string {
  if (token === ANY) return '[^]'
  if (typeof token === 'number') return hex(token)
  let source = ''
  for (let b = 0; b < 256; b++) {
    if (token[b] === 0) continue
    let end = b
    while (end < 255 && token[end + 1] === 1) end++
    source += end === b ? hex(b) : `${hex(b)}-${hex(end)}`
    b = end
  }
  return `[${source}]`
}
