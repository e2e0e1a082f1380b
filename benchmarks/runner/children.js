// Child processes: every one is tracked and ended on the way out, whatever the way out is.

import { once } from 'node:events'

export const children = new Set()

export function track (child, label) {
  child.label = label
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

export async function stop (child, signal = 'SIGTERM', ms = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  if (child.guarded) child.stdin.end()
  else child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), ms)
  await exited
  clearTimeout(timer)
}

export async function stopAll () {
  await Promise.all([...children].map((c) => stop(c)))
}

process.on('exit', () => {
  // Guarded store servers go with their pipe, which closes with this process.
  for (const child of children) if (!child.guarded) child.kill('SIGKILL')
})
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping ${children.size} child process(es)`)
    process.exit(130)
  })
}
