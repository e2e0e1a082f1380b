// The order of a run's samples: every variant once a round, next to its baseline.

/** Each sample to take, in order: { variant, round }. */
export function schedule (variants, rounds) {
  const groups = groupsOf(variants)
  const order = []
  for (let round = 0; round < rounds; round++) {
    // Interleaved: every round visits every group, each round starting at another group and,
    // within a group, at another variant. A group's baseline is sampled at its start and at
    // its end, so that each variant's ratio compares it with baseline samples that bracket it.
    for (const { baseline, members } of rotate(groups, round)) {
      order.push({ variant: baseline, round })
      if (members.length === 0) continue
      for (const variant of rotate(members, round)) order.push({ variant, round })
      order.push({ variant: baseline, round })
    }
  }
  return order
}

/** Variants grouped under their baseline (a variant without one is a group's baseline). */
function groupsOf (variants) {
  const groups = variants.filter((v) => v.baseline === undefined).map((baseline) => ({ baseline, members: [] }))
  for (const v of variants) {
    if (v.baseline !== undefined) groups.find((g) => g.baseline.name === v.baseline).members.push(v)
  }
  return groups
}

function rotate (list, by) {
  const shift = list.length === 0 ? 0 : by % list.length
  return [...list.slice(shift), ...list.slice(0, shift)]
}
