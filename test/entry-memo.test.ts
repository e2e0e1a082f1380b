import t from 'tap'
import { EntryMemo } from '../lib/entry-memo.js'

// The memo of decoded remote entries: by key and content, bounded, least recently used out
// first, and once full, new keys admitted one in 32 (no cliff when the working set is larger).

const KiB = 1024
const MiB = 1024 * KiB

/** A memo whose "decoding" is a copy, counting the decodes per key. */
function counted (maxBytes?: number): { memo: EntryMemo<Buffer>, decodes: Map<string, number>, get: (key: string, bytes: Buffer, identifying?: number) => Buffer } {
  const memo = new EntryMemo<Buffer>(maxBytes)
  const decodes = new Map<string, number>()
  const get = (key: string, bytes: Buffer, identifying = 0): Buffer => memo.get(key, bytes, identifying, (b) => {
    decodes.set(key, (decodes.get(key) ?? 0) + 1)
    return Buffer.from(b)
  }, (value) => ({ value, size: value.length }))
  return { memo, decodes, get }
}

const entry = (id: number, size = 64 * KiB): Buffer => {
  const b = Buffer.alloc(size, id % 251)
  b.write(String(id).padEnd(16, '.'))
  return b
}

t.test('the same bytes under a key are decoded once, whatever Buffer they arrive in; other bytes are decoded', async (t) => {
  const { decodes, get, memo } = counted()
  const first = get('k1', entry(1))
  t.equal(get('k1', entry(1)), first, 'a copy of the same bytes gets the kept result')
  const changed = entry(1)
  changed[changed.length - 1] ^= 1
  const second = get('k1', changed)
  t.not(second, first, 'one byte different is another entry')
  t.equal(decodes.get('k1'), 2)
  t.equal(get('k1', changed), second, 'the new bytes are kept in place of the old')
  t.equal(memo.bytes, 64 * KiB + 256, 'one entry kept for the key, not two')
  t.not(get('k2', entry(1)), first, 'the same bytes under another key are that key\'s own entry')
})

t.test('bounded: the least recently used go first', async (t) => {
  const { decodes, get, memo } = counted(MiB)
  get('k0', entry(0))
  get('k1', entry(1))
  // 64 KiB each (plus overhead): 300 of them are well past 1 MiB.
  for (let id = 2; id < 300; id++) {
    get(`k${id}`, entry(id))
    get('k1', entry(1)) // kept in use
  }
  t.ok(memo.bytes <= MiB, `${memo.bytes} bytes kept`)
  get('k0', entry(0))
  get('k1', entry(1))
  t.equal(decodes.get('k0'), 2, 'the unused first entry was evicted and decoded again')
  t.equal(decodes.get('k1'), 1, 'the entry in use stayed')
})

t.test('a working set larger than the memo, read in turn, still finds part of it (plain LRU: nothing)', async (t) => {
  // ~1 KB entries, a 1 MiB memo (about 800 of them), 8,000 keys cycled 20 times.
  const { decodes, get, memo } = counted(MiB)
  const keys = 8000
  const bodies = Array.from({ length: keys }, (_, id) => entry(id, 1024))
  let hits = 0
  for (let round = 0; round < 20; round++) {
    for (let id = 0; id < keys; id++) {
      const before = decodes.get(`k${id}`) ?? 0
      get(`k${id}`, bodies[id])
      if (round >= 10 && decodes.get(`k${id}`) === before) hits++
    }
  }
  const rate = hits / (10 * keys)
  const fits = MiB / (1024 + 256) / keys
  t.ok(rate >= 0.6 * fits, `hit rate ${(rate * 100).toFixed(1)}% over the last 10 rounds; ${(fits * 100).toFixed(1)}% of the keys fit`)
  t.ok(memo.bytes <= MiB)
})

t.test('a working set that fits is kept whole, and a new one that fits replaces it', async (t) => {
  const { decodes, get } = counted(MiB)
  const round = (from: number): number => {
    let decoded = 0
    for (let id = from; id < from + 500; id++) {
      const before = decodes.get(`k${id}`) ?? 0
      get(`k${id}`, entry(id, 1024))
      if (decodes.get(`k${id}`) !== before) decoded++
    }
    return decoded
  }
  t.equal(round(0), 500, 'first round: all decoded')
  t.equal(round(0), 0, 'second round: all kept')
  // 500 other keys: the memo holds ~800, so old ones must go. While it is full, one new key in
  // 32 is taken in (in place of the least recently used, the old set's), so the new set comes
  // in over rounds, a little slower as fewer of its keys miss.
  const decoded = [round(10_000)]
  while (decoded[decoded.length - 1] > 50 && decoded.length < 100) decoded.push(round(10_000))
  t.ok(decoded[0] > 100, `the first round of the new set decodes ${decoded[0]} of 500`)
  t.ok(decoded.length <= 80, `after ${decoded.length} rounds, 90% of the new set is kept`)
  let rounds = 0
  while (round(10_000) > 0 && rounds < 500) rounds++
  t.ok(rounds < 500, `and all of it after ${decoded.length + rounds + 1} rounds`)
  t.equal(round(10_000), 0)
})

t.test('entries over 256 KiB are decoded every time, and do not push others out', async (t) => {
  const { decodes, get } = counted()
  get('k1', entry(1))
  for (let i = 0; i < 3; i++) get('k2', entry(2, 300 * KiB))
  t.equal(decodes.get('k2'), 3)
  for (let i = 0; i < 100; i++) get('k3', entry(3, MiB))
  get('k1', entry(1))
  t.equal(decodes.get('k1'), 1)
})

t.test('the codec keeps remote response entries with bodies of their own, not views into what the client read', async (t) => {
  const { Codec } = await import('../lib/codec.js')
  const codec = new Codec({ enabled: true, threshold: 1 << 20 })
  const body = Buffer.from(JSON.stringify({ text: 'x'.repeat(500) }))
  const stored = codec.encodeResponse({ status: 200, headers: {}, storedAt: 0, etag: '"e"', vary: null, body }, false)
  // What a client hands back: a slice of its socket buffer, many times the entry's size.
  const socketBuffer = Buffer.alloc(64 * KiB)
  stored.copy(socketBuffer, 100)
  const read = codec.decode(socketBuffer.subarray(100, 100 + stored.length), 'k', true)
  t.equal(read.kind, 'response')
  if (read.kind !== 'response') return
  t.same(read.body, body)
  t.not(read.body.buffer, socketBuffer.buffer, 'the kept body does not hold the 64 KiB buffer')
  const again = codec.decode(Buffer.from(stored), 'k', true)
  t.equal(again, read, 'the next read of the same bytes gets the kept entry')
})

t.test('with identifying bytes, those alone are compared: equal ones get the kept result, any other count decodes', async (t) => {
  const { decodes, get, memo } = counted()
  const bytes = entry(1, 1024)
  const first = get('k1', bytes, 16)
  t.equal(memo.bytes, 1024 + 256 + 16, 'the identifying copy is counted')
  const sameHead = Buffer.from(bytes)
  sameHead[1000] ^= 1
  t.equal(get('k1', sameHead, 16), first, 'a difference past the identifying bytes is not looked at')
  const otherHead = Buffer.from(bytes)
  otherHead[15] ^= 1
  const second = get('k1', otherHead, 16)
  t.not(second, first, 'one identifying byte different is another entry')
  t.not(get('k1', otherHead, 17), second, 'the same bytes identified by another length are decoded again')
  t.not(get('k1', otherHead), second, 'and so are they when the whole of them identifies')
  t.equal(decodes.get('k1'), 4)
  t.equal(get('k1', Buffer.from(otherHead)), get('k1', otherHead), 'digested entries are kept as before')
  t.equal(decodes.get('k1'), 4)
})

t.test('remote responses with the ETag the fill computed are told apart by their metadata; with a handler\'s own ETag, by all their bytes', async (t) => {
  const { Codec, strongEtag } = await import('../lib/codec.js')
  const codec = new Codec({ enabled: true, threshold: 64 })
  const response = (text: string, etag: string): Parameters<typeof codec.encodeResponse>[0] => {
    const body = Buffer.from(JSON.stringify({ text: text.repeat(200) }))
    return { status: 200, headers: { 'content-type': 'application/json' }, storedAt: 1_000, etag, vary: null, body }
  }
  const decodeFresh = (bytes: Buffer): ReturnType<typeof codec.decode> => codec.decode(Buffer.from(bytes), 'k', true)

  const a = response('a', '')
  a.etag = strongEtag(a.body)
  const storedA = codec.encodeResponse(a, true, true)
  t.equal(storedA[2] & 0x20, 0x20, 'flagged: the ETag is a digest of the body')
  t.equal(storedA[2] & 0x10, 0x10, 'and compressed')
  const readA = decodeFresh(storedA)
  t.equal(decodeFresh(storedA), readA, 'the same entry read again is the kept one')
  const b = response('b', '')
  b.etag = strongEtag(b.body)
  const readB = decodeFresh(codec.encodeResponse(b, true, true))
  t.not(readB, readA, 'another body under the key, stored in the same millisecond: its ETag differs, so does the entry')
  t.same(readB.kind === 'response' && JSON.parse(readB.body.toString()).text, 'b'.repeat(200))

  // A handler's own ETag says nothing about the body: two bodies may carry the same one.
  const own1 = codec.encodeResponse(response('c', '"v1"'), true)
  t.equal(own1[2] & 0x20, 0, 'not flagged')
  const read1 = decodeFresh(own1)
  t.equal(decodeFresh(own1), read1, 'the same bytes read again are the kept entry')
  const read2 = decodeFresh(codec.encodeResponse(response('d', '"v1"'), true))
  t.not(read2, read1)
  t.same(read2.kind === 'response' && JSON.parse(read2.body.toString()).text, 'd'.repeat(200), 'same ETag, same metadata, new body: the new body is served')
})
