// Shared by the soak's child processes (truth, instances): the ready line the runner waits for,
// and an exit tied to the runner's stdin pipe, which closes however the runner ends (even
// SIGKILL), so no child outlives a soak.

export function announce (info) {
  process.stdout.write(JSON.stringify(info) + '\n')
}

export function exitWithParent (close) {
  let closing = false
  const shutdown = () => {
    if (closing) return
    closing = true
    // Closing a cache client can hang on a paused server: the exit must not depend on it.
    setTimeout(() => process.exit(0), 2000).unref()
    Promise.resolve().then(close).catch(() => {}).finally(() => process.exit(0))
  }
  process.stdin.on('end', shutdown).on('error', shutdown).resume()
  process.once('SIGTERM', shutdown)
  process.once('SIGINT', shutdown)
}
