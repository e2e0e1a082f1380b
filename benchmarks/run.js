#!/usr/bin/env node
// The benchmark suite: `npm run bench` (full, ~10 minutes) or `npm run bench -- --quick` (~2.3 minutes).
// See benchmarks/README.md for the method. Every process it starts (redis-server, memcached, one
// server per variant, one load-generator process per sample) is loopback-only and ended before it
// exits, also on errors and Ctrl-C.
//
// Options:
//   --quick               3 short rounds (1 s samples, 0.5 s warm-up), no ceiling variants,
//                         one footprint run
//   --rounds N            rounds of interleaved samples (default 3)
//   --duration S          seconds measured per sample (default 5; quick 1)
//   --warmup S            seconds of load before each sample, not measured (default 1; quick 0.5)
//   --connections N       load-generator connections (default 50)
//   --load autocannon|wrk the load generator (default autocannon; wrk: the C one, needs `wrk` on
//                         the PATH, lighter on the 2 cores the server shares with it)
//   --wrk-threads N       wrk threads (default 2, at most --connections)
//   --only a,b,...        run only these variants (their baselines and ceilings are added);
//                         `footprint` is one
//   --no-ceilings         leave out the ceiling variants (onRequest + Map/ioredis/memjs, string),
//                         also those --only would add
//   --no-footprint        skip the memory-footprint run
//   --no-build            do not run `npm run build` first (dist/ must exist)
//   --no-compression      plugin variants with compression disabled (diagnostic)
//   --profile a,b         profile these variants' servers with `node --cpu-prof` (one sample each)
//                         and print the top self-time functions; no table
//   --retries N           run a sample again (up to N times) when other processes used more than
//                         --noise-limit of the machine's CPU during it (default 2; quick 0)
//   --noise-limit F       that share, 0..1 (default 0.1)
//   --json FILE           where to write the results (default benchmarks/results/latest.json)
//   --help                this text

import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
// First of this file's modules: --help and bad options end the run before anything starts.
import { BENCHMARKS, args, config } from './runner/config.js'
import { PAYLOAD_BYTES } from './payload.js'
import { writeChart } from './runner/chart.js'
import { stop, stopAll } from './runner/children.js'
import { build } from './runner/dist.js'
import { runFootprints } from './runner/footprint.js'
import { loadavg, machine } from './runner/machine.js'
import { profile } from './runner/profiling.js'
import { bullets, fmt, loadGenerator, pct, table, writeReport } from './runner/report.js'
import { planSamples, sample } from './runner/sample.js'
import { schedule } from './runner/schedule.js'
import { calls, startServer } from './runner/servers.js'
import { startStores, storeEnv } from './runner/stores.js'
import { summarize } from './runner/summary.js'
import { selectVariants } from './runner/variants.js'
import { verify } from './runner/verify.js'

async function main () {
  const tmp = mkdtempSync(join(os.tmpdir(), 'fastify-server-cache-bench-'))
  try {
    if (config.load === 'wrk' && spawnSync('wrk', ['-v']).error !== undefined) throw new Error('--load wrk: wrk not found (Debian: apt-get install wrk)')
    build()
    if (args.profile !== undefined) return await profile(args.profile, tmp)
    const variants = selectVariants()
    const footprint = !args['no-footprint'] && (args.only === undefined || args.only.split(',').includes('footprint'))
    const info = machine()
    const started = Date.now()
    const order = schedule(variants, config.rounds)
    planSamples(order.length, started)
    console.log(`${info.nproc} CPUs (${info.cpu}), Node ${info.node}, redis ${info.redis}, memcached ${info.memcached}, ${info.loadGenerator}, load average ${info.loadavg}`)
    console.log(`${variants.length} variants x ${config.rounds} rounds, ${loadGenerator(config)} -c ${config.connections} -d ${config.duration} after ${config.warmup} s warm-up; payload ${PAYLOAD_BYTES} bytes; compression ${config.compression ? 'default (on)' : 'off'}`)

    // First, while no server runs: the footprint process has the machine to itself. Default
    // options only: the memory store keeps entries uncompressed whatever `compression` says.
    const footprints = await runFootprints(footprint ? ['on'] : [])
    const problems = footprints.flatMap((f) => f.problems)

    const stores = await startStores(variants, tmp)
    const env = storeEnv(stores)
    const servers = new Map()
    for (const variant of variants) {
      const server = await startServer(variant, env)
      server.store = stores[variant.needs]
      servers.set(variant.name, server)
      problems.push(...await verify(variant, server))
    }
    if (problems.length > 0) console.log(`verification problems:\n${bullets(problems)}`)

    const samples = new Map(variants.map((v) => [v.name, []]))
    for (const { variant, round } of order) {
      const s = await sample(variant, servers.get(variant.name), round)
      samples.get(variant.name).push(s)
      problems.push(...s.problems)
      console.log(`round ${round + 1}/${config.rounds}  ${variant.name.padEnd(20)} ${fmt(s.rps).padStart(7)} req/s  p99 ${String(s.p99).padStart(3)} ms  other load ${pct(s.noise)}${s.attempts > 1 ? ` (best of ${s.attempts})` : ''}${s.problems.length > 0 ? '  !' : ''}`)
    }

    const finalCalls = new Map()
    for (const [name, server] of servers) finalCalls.set(name, (await calls(server.port)).calls)
    await Promise.all([...servers.values()].map((s) => stop(s.child)))

    const results = summarize(variants, samples, finalCalls)
    const report = {
      date: new Date().toISOString(),
      machine: { ...info, loadavgEnd: loadavg() },
      config: { ...config, quick: args.quick, payloadBytes: PAYLOAD_BYTES },
      seconds: Math.round((Date.now() - started) / 1000),
      results,
      footprints,
      problems,
    }
    const out = args.json ?? join(BENCHMARKS, 'results', 'latest.json')
    writeReport(report, out)
    // The ratios as an SVG chart next to the JSON (latest.json -> latest.svg).
    const chart = out.replace(/\.json$/, '') + '.svg'
    writeChart(report, chart)
    console.log('\n' + table(report))
    for (const r of results.filter((x) => x.versus !== undefined)) {
      console.log(`${r.name} vs ${r.versus.name}: ${r.versus.ratio.toFixed(3)}x${r.versus.target === undefined ? '' : ` (target >= ${r.versus.target}: ${r.versus.met ? 'met' : 'MISSED'})`}`)
    }
    for (const r of results.filter((x) => x.ceiling !== undefined)) {
      const c = r.ceiling
      console.log(`${r.name} vs its ceiling ${c.name}: ${c.ratio.toFixed(3)}x (rounds ${c.ratios.join(' / ')})${c.target === undefined ? '' : ` (target >= ${c.target}: ${c.met ? 'met' : 'MISSED'})`}`)
    }
    console.log(`\nresults: ${out}\nchart: ${chart}`)
    if (problems.length > 0) {
      console.log(`\n${problems.length} check(s) failed:\n${bullets(problems)}`)
      process.exitCode = 1
    }
  } finally {
    await stopAll()
    rmSync(tmp, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
