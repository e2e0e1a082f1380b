import { connect, createServer, type Socket } from 'node:net'

/**
 * A TCP relay in front of a real server, for a fault no server process produces on demand: a
 * connection closed in the middle of an answer (a dropped link, a proxy restarting). cutAfter(n)
 * lets the next n bytes of answers through, then ends the client's connection there.
 */
export interface CutProxy {
  /** `127.0.0.1:port`. */
  readonly address: string
  cutAfter (bytes: number): void
  close (): Promise<void>
}

export async function startCutProxy (host: string, port: number): Promise<CutProxy> {
  const sockets = new Set<Socket>()
  let budget: number | undefined
  const relay = createServer((client) => {
    const upstream = connect(port, host)
    sockets.add(client).add(upstream)
    const end = (): void => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('data', (chunk: Buffer) => upstream.write(chunk))
    upstream.on('data', (chunk: Buffer) => {
      if (budget === undefined) {
        client.write(chunk)
        return
      }
      const passed = Math.min(budget, chunk.length)
      budget -= passed
      if (budget > 0) {
        client.write(chunk)
        return
      }
      budget = undefined
      // end() after the write: the partial answer arrives, then the connection closes.
      client.end(chunk.subarray(0, passed))
      upstream.destroy()
    })
    for (const socket of [client, upstream]) {
      socket.on('close', end)
      socket.on('error', end)
    }
  })
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve))
  const { port: own } = relay.address() as { port: number }
  return {
    address: `127.0.0.1:${own}`,
    cutAfter (bytes) { budget = bytes },
    async close () {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => relay.close(() => resolve()))
    },
  }
}
