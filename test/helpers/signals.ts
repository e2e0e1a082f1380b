import { readdirSync, readFileSync } from 'node:fs'

/**
 * SIGSTOP, returning only once the process (every thread) is stopped: kill() returns when the
 * signal is queued, and a server on the other core may still answer a request or two, which
 * made "the first request after pause() fails" tests flaky.
 */
export function stopProcess (pid: number | undefined): void {
  if (pid === undefined) return
  try { process.kill(pid, 'SIGSTOP') } catch { return }
  const deadline = Date.now() + 2000
  while (Date.now() < deadline) {
    if (allStopped(pid)) return
  }
}

function allStopped (pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).every((tid) => {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      // The state follows the parenthesised command name: T (stopped) or t (traced).
      const state = stat[stat.lastIndexOf(')') + 2]
      return state === 'T' || state === 't'
    })
  } catch {
    return true
  }
}
