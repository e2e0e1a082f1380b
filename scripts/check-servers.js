// npm test starts real redis-server and memcached processes (and makes a SASL user database for
// memcached with saslpasswd2); without them every store test would fail one by one. Stop at once
// with one line that says how to install them.
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

const onPath = (name) => (process.env.PATH ?? '').split(delimiter).some((dir) => {
  try { accessSync(join(dir, name), constants.X_OK); return true } catch { return false }
})
const executable = (file) => { try { accessSync(file, constants.X_OK); return true } catch { return false } }

const missing = []
if (!onPath('redis-server')) missing.push('redis-server')
if (!executable(process.env.MEMCACHED_BIN ?? '/usr/bin/memcached')) missing.push(`memcached (${process.env.MEMCACHED_BIN ?? '/usr/bin/memcached'})`)
if (!onPath('saslpasswd2') && !executable('/usr/sbin/saslpasswd2')) missing.push('saslpasswd2 (sasl2-bin)')
if (missing.length > 0) {
  console.error(`npm test needs ${missing.join(' and ')}: run \`apt-get update && apt-get install -y redis-server memcached sasl2-bin\` (as root on Debian/Ubuntu), or set MEMCACHED_BIN`)
  process.exit(1)
}
