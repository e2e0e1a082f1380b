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
      ratioOfMedians: v.baseline === undefined ? undefined : rps / med.get(v.baseline),
      target: v.target,
      met: v.target === undefined || ratio === undefined ? undefined : ratio >= v.target,
      handlerCalls: finalCalls.get(v.name),
      requests: list.reduce((a, s) => a + s.requests, 0),
      // Store reads per request served (warm-up included on both sides); undefined without a store.
      readsPerRequest: list[0]?.storeReads === undefined ? undefined : list.reduce((a, s) => a + s.storeReads, 0) / list.reduce((a, s) => a + s.served, 0),
      noise: list.map((s) => s.noise),
      retries: list.reduce((a, s) => a + s.attempts - 1, 0),
      ok: list.every((s) => s.problems.length === 0),
    }
  })
  // A variant against another one (metrics on vs off): per round, the two raw-paired ratios.
  for (const r of results) {
    const v = variants.find((x) => x.name === r.name)
    const other = results.find((x) => x.name === v.versus)
    if (other === undefined || r.ratios === undefined || other.ratios === undefined) continue
    const ratio = median(r.ratios.map((x, i) => x / other.ratios[i]).filter(Number.isFinite))
    r.versus = { name: other.name, ratio, target: v.versusTarget, met: v.versusTarget === undefined ? undefined : ratio >= v.versusTarget }
  }
  return results
}

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}
