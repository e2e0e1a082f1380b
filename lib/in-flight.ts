/**
 * Promises in flight by key, so that concurrent callers share one piece of work (a store read, a
 * producer). Each is remembered with what was true when it started (`since`); a caller joins it
 * only while `joinable(since)` holds, otherwise it starts a new one. Settled promises are
 * forgotten: nothing here outlives its work.
 */
export class InFlight<T, S = number> {
  readonly #running = new Map<string, { since: S, promise: Promise<T> }>()

  get (key: string, now: S, joinable: (since: S) => boolean, start: () => Promise<T>): Promise<T> {
    const running = this.#running.get(key)
    if (running !== undefined && joinable(running.since)) return running.promise
    const pending = { since: now, promise: start() }
    this.#running.set(key, pending)
    const done = (): void => { if (this.#running.get(key) === pending) this.#running.delete(key) }
    pending.promise.then(done, done)
    return pending.promise
  }

  /** Later callers start anew (a write of the key may land after this round trip read it). */
  forget (key: string): void {
    this.#running.delete(key)
  }
}
