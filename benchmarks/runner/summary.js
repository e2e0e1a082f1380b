// The results: each variant's samples reduced to medians and ratios against its baseline.

export function summarize (variants, samples, finalCalls) {
  const med = new Map(variants.map((v) => [v.name, median(samples.get(v.name).map((s) => s.rps))]))
  // Paired ratio: each round's sample over the mean of the two baseline samples around it.
  const paired = (v) => {
    const base = samples.get(v.baseline)
    const ratios = samples.get(v.name).map((s) => {
      const around = base.filter((b) => b.round === s.round)
      return s.rps / (around.reduce((a, b) => a + b.rps, 0) / around.length)
    })
    return { ratio: median(ratios), ratios }
  }
  const results = variants.map((v) => {
    const list = samples.get(v.name)
    const rps = med.get(v.name)
    const { ratio, ratios } = v.baseline === undefined ? {} : paired(v)
    const rpsList = list.map((s) => s.rps)
    return {
      name: v.name,
      what: v.what,
      kind: v.kind,
      rps,
      samples: rpsList.map((r) => Math.round(r)),
      spread: (Math.max(...rpsList) - Math.min(...rpsList)) / rps,
      p99: median(list.map((s) => s.p99)),
      xRaw: v.baseline === 'raw' ? ratio : med.has('raw') ? rps / med.get('raw') : undefined,
      baseline: v.baseline,
      ratio,
      ratios: ratios?.map((r) => Number(r.toFixed(3))),
      // The round of each entry of `ratios` (one sample per round for a non-baseline variant).
      rounds: ratios === undefined ? undefined : list.map((s) => s.round),
      ratioOfMedians: v.baseline === undefined ? undefined : rps / med.get(v.baseline),
      target: v.target,
      met: v.target === undefined || ratio === undefined ? undefined : ratio >= v.target,
      handlerCalls: finalCalls.get(v.name),
      requests: list.reduce((a, s) => a + s.requests, 0),
      // Store reads per request served (warm-up included on both sides); undefined without a store.
      readsPerRequest: list[0]?.storeReads === undefined ? undefined : list.reduce((a, s) => a + s.storeReads, 0) / list.reduce((a, s) => a + s.served, 0),
      // µs of CPU per request served: the server's (robust to noise where req/s is not: it counts
      // what a request costs, not how fast a busy machine got through them), and its store's.
      cpuPerRequest: list.reduce((a, s) => a + s.serverCpu, 0) / list.reduce((a, s) => a + s.served, 0),
      storeCpuPerRequest: list[0]?.storeCpu === undefined ? undefined : list.reduce((a, s) => a + s.storeCpu, 0) / list.reduce((a, s) => a + s.served, 0),
      noise: list.map((s) => s.noise),
      retries: list.reduce((a, s) => a + s.attempts - 1, 0),
      // --load wrk: warm-up responses whose status (and x-cache) the wrk script checked.
      responsesChecked: list.some((s) => s.responseChecks !== undefined) ? list.reduce((a, s) => a + (s.responseChecks?.checked ?? 0), 0) : undefined,
      ok: list.every((s) => s.problems.length === 0),
    }
  })
  // A variant against another one of the same run: per round, the ratio of the two
  // baseline-paired ratios, median over the rounds. `versus` (metrics on vs off) and `ceiling`
  // (a plugin variant against the hand-written ceiling driven the same way).
  for (const r of results) {
    const v = variants.find((x) => x.name === r.name)
    const versus = against(r, results.find((x) => x.name === v.versus), v.versusTarget)
    if (versus !== undefined) r.versus = versus
    const ceiling = against(r, results.find((x) => x.name === v.ceiling), v.ceilingTarget)
    if (ceiling !== undefined) r.ceiling = ceiling
  }
  return results
}

/** r over other, round by round (both paired with their common baseline in that round). */
function against (r, other, target) {
  if (other === undefined || r.ratios === undefined || other.ratios === undefined || r.baseline !== other.baseline) return undefined
  const ratios = r.rounds.map((round, i) => r.ratios[i] / other.ratios[other.rounds.indexOf(round)]).filter(Number.isFinite)
  if (ratios.length === 0) return undefined
  const ratio = median(ratios)
  // CPU per request over the variant's and its ceiling's whole runs (server and store together).
  const cpu = (x) => x.cpuPerRequest + (x.storeCpuPerRequest ?? 0)
  return { name: other.name, ratio, ratios: ratios.map((x) => Number(x.toFixed(3))), target, met: target === undefined ? undefined : ratio >= target, cpuRatio: cpu(r) / cpu(other) }
}

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}
