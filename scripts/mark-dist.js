// One source, two builds: Node decides a .js file's module format from the nearest package.json.
import { writeFileSync } from 'node:fs'

for (const [dir, type] of [['esm', 'module'], ['cjs', 'commonjs']]) {
  writeFileSync(new URL(`../dist/${dir}/package.json`, import.meta.url), `{ "type": "${type}" }\n`)
}
