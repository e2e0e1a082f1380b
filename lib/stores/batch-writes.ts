import type { Writable } from 'node:stream'

const corked = new WeakSet<Writable>()

/**
 * Holds a client socket's writes until the event loop has run every I/O callback that is ready,
 * then sends them in one write. Each socket write is a syscall, and on small VMs it was the
 * largest cost of a store round trip. Node drains `process.nextTick` after every I/O callback,
 * so batching on the next tick (ioredis' auto-pipelining) only joins commands of one request;
 * `setImmediate` runs after the whole poll phase, so the lookups of every request that arrived
 * together leave in one write. What it adds to a lone request is the rest of one loop turn.
 */
export function batchWrites (socket: Writable | undefined | null): void {
  if (socket === undefined || socket === null || corked.has(socket) || socket.destroyed) return
  corked.add(socket)
  socket.cork()
  setImmediate(() => {
    corked.delete(socket)
    socket.uncork()
  })
}
