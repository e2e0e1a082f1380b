import type { Socket } from 'node:net'
import type { Server } from 'memjs'

const HEADER = 24
/** Magic byte of every binary-protocol response. */
const RESPONSE = 0x81
const SASL_LIST_MECHS = 0x20
const SASL_AUTH = 0x21
const AUTH_ERROR = 0x20

/** The memjs Server internals the parser stands in for (memjs 1.3). */
interface Parsed {
  _socket?: Socket
  responseHandler: (data: Buffer) => void
  respond: (response: unknown) => void
  saslAuth: () => void
  error: (err: unknown) => void
  emit: (event: string) => boolean
}

/**
 * Replaces memjs's response parser on a server the store created. memjs keeps the unparsed
 * bytes of a connection in one buffer that nothing ever clears: a connection cut in the middle
 * of an answer (a timeout reset, a dropped link) leaves a partial message there, the next
 * connection's answers are appended to it and misread, and that server never answers this
 * process again. Here bytes left over belong to the connection they came from, and a message
 * that is not a response (desynchronized stream) drops the connection instead of being read as
 * one. Answers are also read in place: memjs copied all it had received into a new, zero-filled
 * Buffer on every chunk.
 */
export function parseResponsesOf (server: Server): void {
  const s = server as unknown as Parsed
  let rest: Buffer | undefined
  let restOf: Socket | undefined
  s.responseHandler = (data: Buffer): void => {
    const socket = s._socket
    const buf = rest !== undefined && restOf === socket ? Buffer.concat([rest, data]) : data
    rest = undefined
    let at = 0
    while (buf.length - at >= HEADER) {
      const keyLength = buf.readUInt16BE(at + 2)
      const extrasLength = buf[at + 4]
      const bodyLength = buf.readUInt32BE(at + 8)
      if (buf[at] !== RESPONSE || bodyLength < keyLength + extrasLength) {
        s.error(new Error(`memcached: ${server.host}:${server.port} sent bytes that are not a response; connection reset`))
        return
      }
      if (buf.length - at < HEADER + bodyLength) break
      const body = at + HEADER
      const header = {
        magic: RESPONSE,
        opcode: buf[at + 1],
        keyLength,
        extrasLength,
        dataType: buf[at + 5],
        status: buf.readUInt16BE(at + 6),
        totalBodyLength: bodyLength,
        opaque: buf.readUInt32BE(at + 12),
        cas: buf.subarray(at + 16, body),
      }
      const key = body + extrasLength
      const response = { header, extras: buf.subarray(body, key), key: buf.subarray(key, key + keyLength), val: buf.subarray(key + keyLength, body + bodyLength) }
      at = body + bodyLength
      // As memjs: SASL steps of a new connection, then answers to requests.
      if (header.opcode === SASL_LIST_MECHS) s.saslAuth()
      else if (header.status === AUTH_ERROR) s.error('Memcached server authentication failed!')
      else if (header.opcode === SASL_AUTH) s.emit('authenticated')
      else s.respond(response)
      // A callback dropped the connection: the rest of its bytes go with it.
      if (s._socket !== socket) return
    }
    if (at < buf.length) {
      rest = buf.subarray(at)
      restOf = socket
    }
  }
}
