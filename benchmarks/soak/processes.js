// Every process the soak starts is tracked here and ended on the way out, whatever the way out.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

const running = new Map()

/**
 * Track `child` until it exits. `emergencyKill` runs synchronously if this process exits with
 * the child still there (the default SIGKILLs the child itself).
 */
export function track (child, emergencyKill = () => child.kill('SIGKILL')) {
  running.set(child, emergencyKill)
  child.once('exit', () => running.delete(child))
  return child
}

process.once('exit', () => {
  for (const kill of running.values()) {
    try { kill() } catch {}
  }
})

/**
 * Closes the child's stdin (its signal to stop: see child.js and the store guard in servers.js),
 * then SIGKILLs it if it is still there after `ms`.
 */
export async function stop (child, ms = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.stdin.end()
  const timer = setTimeout(() => child.kill('SIGKILL'), ms)
  await exited
  clearTimeout(timer)
}

export async function stopAll () {
  await Promise.all([...running.keys()].map((child) => stop(child)))
}

/**
 * Start `node <script> ...args` from this directory and resolve `{ child, ...ready }` once it
 * prints its JSON ready line. stderr is kept (last 4 KB) for error messages.
 */
export async function startNode (script, args, label, timeoutMs = 30_000) {
  // Its own process group: a terminal's Ctrl-C reaches the runner only, which stops the
  // children in order and still prints its summary.
  const child = track(spawn(process.execPath, [fileURLToPath(new URL(script, import.meta.url)), ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  }))
  child.label = label
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk) => { stderr = (stderr + chunk).slice(-4000) })
  child.stderrTail = () => stderr
  const ready = await new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${label} not ready within ${timeoutMs} ms\n${stderr}`)), timeoutMs)
    const onData = (chunk) => {
      out += chunk
      const end = out.indexOf('\n')
      if (end < 0) return
      clearTimeout(timer)
      child.stdout.off('data', onData)
      child.stdout.resume()
      try {
        resolve(JSON.parse(out.slice(0, end)))
      } catch {
        reject(new Error(`${label}: unexpected ready line ${out.slice(0, end)}`))
      }
    }
    child.stdout.setEncoding('utf8').on('data', onData)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${label} exited (${code ?? signal}) before it was ready\n${stderr}`))
    })
  })
  return { child, ...ready }
}
