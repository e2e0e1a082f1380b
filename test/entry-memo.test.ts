import t from 'tap'
import { EntryMemo } from '../lib/entry-memo.js'

// The memo of decoded remote entries: by content, bounded, least recently used out first.

const KiB = 1024
const MiB = 1024 * KiB

/** A memo whose "decoding" is a copy, counting the decodes per content. */
function counted (): { memo: EntryMemo<Buffer>, decodes: Map<string, number>, get: (bytes: Buffer) => Buffer } {
  const memo = new EntryMemo<Buffer>()
  const decodes = new Map<string, number>()
  const decode = (bytes: Buffer): Buffer => {
    const id = bytes.subarray(0, 16).toString()
    decodes.set(id, (decodes.get(id) ?? 0) + 1)
    return Buffer.from(bytes)
  }
  const keep = (value: Buffer): { value: Buffer, size: number } => ({ value, size: value.length })
  return { memo, decodes, get: (bytes) => memo.get(bytes, decode, keep) }
}

const entry = (id: number, size = 64 * KiB): Buffer => {
  const b = Buffer.alloc(size, id % 251)
  b.write(String(id).padEnd(16, '.'))
  return b
}

t.test('the same bytes are decoded once, whatever Buffer they arrive in; other bytes are decoded', async (t) => {
  const { decodes, get } = counted()
  const first = get(entry(1))
  t.equal(get(entry(1)), first, 'a copy of the same bytes gets the kept result')
  const changed = entry(1)
  changed[changed.length - 1] ^= 1
  t.not(get(changed), first, 'one byte different is another entry')
  t.equal(decodes.get('1...............'), 2)
})

t.test('bounded at 16 MiB: the least recently used go first', async (t) => {
  const { decodes, get } = counted()
  get(entry(0))
  get(entry(1))
  // 64 KiB each (plus overhead): 300 of them are well past 16 MiB.
  for (let id = 2; id < 300; id++) {
    get(entry(id))
    get(entry(1)) // kept in use
  }
  get(entry(0))
  get(entry(1))
  t.equal(decodes.get('0...............'), 2, 'the unused first entry was evicted and decoded again')
  t.equal(decodes.get('1...............'), 1, 'the entry in use stayed')
  get(entry(299))
  t.equal(decodes.get('299.............'), 1, 'a recent entry stayed')
})

t.test('entries over 256 KiB are decoded every time, and do not push others out', async (t) => {
  const { decodes, get } = counted()
  get(entry(1))
  for (let i = 0; i < 3; i++) get(entry(2, 300 * KiB))
  t.equal(decodes.get('2...............'), 3)
  for (let i = 0; i < 100; i++) get(entry(3, MiB))
  get(entry(1))
  t.equal(decodes.get('1...............'), 1)
})

t.test('the codec keeps remote response entries with bodies of their own, not views into what the client read', async (t) => {
  const { Codec } = await import('../lib/codec.js')
  const codec = new Codec({ enabled: true, threshold: 1 << 20 })
  const body = Buffer.from(JSON.stringify({ text: 'x'.repeat(500) }))
  const stored = codec.encodeResponse({ status: 200, headers: {}, storedAt: 0, etag: '"e"', vary: null, body }, false)
  // What a client hands back: a slice of its socket buffer, many times the entry's size.
  const socketBuffer = Buffer.alloc(64 * KiB)
  stored.copy(socketBuffer, 100)
  const read = codec.decode(socketBuffer.subarray(100, 100 + stored.length))
  t.equal(read.kind, 'response')
  if (read.kind !== 'response') return
  t.same(read.body, body)
  t.not(read.body.buffer, socketBuffer.buffer, 'the kept body does not hold the 64 KiB buffer')
  const again = codec.decode(Buffer.from(stored))
  t.equal(again, read, 'the next read of the same bytes gets the kept entry')
})
