import t from 'tap'
import { CacheConfigurationError, CacheError } from '../lib/errors.js'

t.test('errors carry stable codes', async (t) => {
  const err = new CacheConfigurationError('backend: bad')
  t.ok(err instanceof CacheError)
  t.equal(err.code, 'FST_CACHE_CONFIGURATION')
  t.equal(err.name, 'CacheConfigurationError')
})
