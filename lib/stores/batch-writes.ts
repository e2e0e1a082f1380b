import type { Writable } from 'node:stream'

const corked = new WeakSet<Writable>()
let epoch = 0

/**
 * Holds a client socket's writes until the event loop has run every I/O callback that is ready,
 * then sends them in one write. Each socket write is a syscall, and on small VMs it was the
 * largest cost of a store round trip. Node drains `process.nextTick` after every I/O callback,
 * so batching on the next tick (ioredis' auto-pipelining) only joins commands of one request;
 * `setImmediate` runs after the whole poll phase, so the lookups of every request that arrived
 * together leave in one write. What it adds to a lone request is the rest of one loop turn.
 *
 * A socket that cannot be held (none yet, destroyed) sends at once: that moves the write epoch.
 */
export function batchWrites (socket: Writable | undefined | null): void {
  if (socket === undefined || socket === null || socket.destroyed) {
    epoch++
    return
  }
  if (corked.has(socket)) return
  corked.add(socket)
  socket.cork()
  setImmediate(() => {
    epoch++
    corked.delete(socket)
    socket.uncork()
  })
}

/** For commands sent without batchWrites (Redis Cluster): they may leave at once. */
export function sentNow (): void {
  epoch++
}

/**
 * Changes whenever a store command may have left this process. A read issued at epoch `e` has
 * not reached its server while the epoch is still `e`, so whatever its server answers comes
 * after every request this process has started handling since; across instances that is the
 * only moment at which sharing the read is known to be safe (see Engine#sharedRead).
 */
export function writeEpoch (): number {
  return epoch
}
