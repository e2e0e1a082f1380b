// The machine a run measures on: CPUs, Node, store server versions, load.

import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { ROOT, config } from './config.js'

export function machine () {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : ''
  return {
    nproc: os.availableParallelism(),
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    redis: versionOf('redis-server', ['--version'], /v=(\S+)/),
    memcached: versionOf('memcached', ['-V'], /memcached (\S+)/),
    loadavg: loadavg(),
    loadGenerator: config.load === 'wrk' ? `wrk ${versionOf('wrk', ['-v'], /wrk (\S+)/)}` : `autocannon ${autocannonVersion()}`,
  }
}

function autocannonVersion () {
  try {
    return JSON.parse(readFileSync(join(ROOT, 'node_modules', 'autocannon', 'package.json'), 'utf8')).version
  } catch {
    return 'unknown'
  }
}

export function loadavg () {
  return os.loadavg().map((l) => l.toFixed(2)).join(' ')
}

function versionOf (command, args, pattern) {
  const out = spawnSync(command, args, { encoding: 'utf8' })
  return pattern.exec(`${out.stdout}${out.stderr}`)?.[1] ?? 'unknown'
}
