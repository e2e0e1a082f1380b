// The guarantee under test: a GET sent after a PATCH's response arrived never returns an older
// version of that item, whichever instance served either. The driver reports, in order of
// arrival, each PATCH's answer (`patched`) and, at each GET's send time, takes the floors of the
// items it will read (`floors`); `check` compares the GET's answer with them once it is read.

export function createChecker ({ examples = 5 } = {}) {
  // item id -> { version, instance }: the highest version any PATCH answered so far, and where.
  const known = new Map()
  const violations = { total: 0, sameInstance: 0, crossInstance: 0, examples: [] }
  const described = new Set()

  return {
    violations,

    /** Call when a PATCH's response body has been read in full. */
    patched (itemId, version, instance) {
      const floor = known.get(itemId)
      if (floor === undefined || version > floor.version) known.set(itemId, { version, instance })
    },

    /** Call synchronously just before sending a GET: what it must not fall below. */
    floors (itemIds) {
      return itemIds.map((itemId) => ({ itemId, ...(known.get(itemId) ?? { version: 0, instance: undefined }) }))
    },

    /**
     * One GET's answer: `versions` maps item id -> returned version. Counts one violation per
     * stale response; it is same-instance when any stale item's floor was set by a PATCH to the
     * instance that answered the GET (read-your-writes broken within one instance), else
     * cross-instance.
     */
    check ({ what, instance, cache, filledBy, at }, floors, versions) {
      const stale = floors.filter((floor) => !(versions.get(floor.itemId) >= floor.version))
      if (stale.length === 0) return
      violations.total++
      const same = stale.some((floor) => floor.instance === instance)
      if (same) violations.sameInstance++
      else violations.crossInstance++
      const items = stale.map((f) => `item ${f.itemId} version ${versions.get(f.itemId)} < ${f.version} (PATCH on instance ${f.instance})`)
      const detail = `${what} on instance ${instance} (x-cache ${cache ?? 'none'}, filled by instance ${filledBy ?? '?'}): ${items.join('; ')} [${same ? 'same' : 'cross'}-instance]`
      // A stale entry is usually served many times over: its first time is the example.
      if (violations.examples.length < examples && !described.has(detail)) {
        described.add(detail)
        violations.examples.push(`${at.toFixed(1)} s: ${detail}`)
      }
    },
  }
}
