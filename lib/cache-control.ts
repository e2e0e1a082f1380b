/** How long a stored response is fresh, and its stale windows after that, in seconds. */
export interface Lifetime {
  expiration: number
  whileRevalidate: number
  ifError: number
}

// The server cache is shared by every client, so `s-maxage` (for shared caches) wins over `max-age`.
const S_MAXAGE = directive('s-maxage')
const MAX_AGE = directive('max-age')
const WHILE_REVALIDATE = directive('stale-while-revalidate')
const IF_ERROR = directive('stale-if-error')

/**
 * The lifetime a response asks for in its own `Cache-Control`, within its route's: the route's
 * `expiration` and stale windows are the ceiling (and `expiration` is at most `maxExpiration`),
 * so a handler can shorten how long its response is kept, never lengthen it. A lifetime of 0
 * (`max-age=0` without `s-maxage`) means the response is not stored.
 */
export function responseLifetime (header: unknown, route: Lifetime): Lifetime {
  if (header === undefined) return route
  const cc = Array.isArray(header) ? header.join(',') : String(header)
  const fresh = S_MAXAGE(cc) ?? MAX_AGE(cc)
  const whileRevalidate = WHILE_REVALIDATE(cc)
  const ifError = IF_ERROR(cc)
  if (fresh === undefined && whileRevalidate === undefined && ifError === undefined) return route
  return {
    expiration: fresh === undefined ? route.expiration : Math.min(fresh, route.expiration),
    whileRevalidate: whileRevalidate === undefined ? route.whileRevalidate : Math.min(whileRevalidate, route.whileRevalidate),
    ifError: ifError === undefined ? route.ifError : Math.min(ifError, route.ifError),
  }
}

/** Reads one delta-seconds directive (RFC 9111 §1.2.2); a malformed value counts as absent. */
function directive (name: string): (cc: string) => number | undefined {
  const re = new RegExp(`(?:^|,)\\s*${name.replace('-', '\\-')}\\s*=\\s*"?(\\d+)"?\\s*(?:,|$)`, 'i')
  return (cc) => {
    const m = re.exec(cc)
    return m === null ? undefined : Number(m[1])
  }
}
