import t from 'tap'
import { cacheOptionsFromEnv, CacheConfigurationError } from '../index.js'

t.test('reads every variable with the seeds\' units', async (t) => {
  const options = cacheOptionsFromEnv({
    CACHE_ENABLED: 'Yes',
    CACHE_BACKEND: 'redis',
    DEFAULT_CACHE_EXPIRATION: '600',
    CACHE_MAX_EXPIRATION: '7200',
    CACHE_KEY_PREFIX: 'app',
    CACHE_REDIS_URL: 'redis://127.0.0.1:7000/1',
    CACHE_REDIS_HOST: 'cache.internal',
    CACHE_REDIS_PORT: '7000',
    CACHE_REDIS_DB: '2',
    CACHE_REDIS_USERNAME: 'u',
    CACHE_REDIS_PASSWORD: ' p w ',
    CACHE_REDIS_TLS: 'false',
    CACHE_REDIS_CONNECT_TIMEOUT: '5',
    CACHE_MEMCACHED_SERVERS: 'a:11211, b:11212',
    CACHE_MEMCACHED_USERNAME: 'mu',
    CACHE_MEMCACHED_PASSWORD: 'mp',
    CACHE_COMPRESSION_ENABLED: '0',
    CACHE_COMPRESSION_THRESHOLD: '2048',
    CACHE_STATISTICS_ENABLED: 'TRUE',
    CACHE_OPERATION_TIMEOUT: '100',
  })
  t.same(options, {
    enabled: true,
    backend: 'redis',
    defaultExpiration: 600,
    maxExpiration: 7200,
    keyPrefix: 'app',
    statistics: true,
    operationTimeout: 100,
    redis: { url: 'redis://127.0.0.1:7000/1', host: 'cache.internal', port: 7000, db: 2, username: 'u', password: ' p w ', tls: false, connectTimeout: 5000 },
    memcached: { servers: 'a:11211,b:11212', username: 'mu', password: 'mp' },
    compression: { enabled: false, threshold: 2048 },
  })
})

t.test('unset variables are left out', async (t) => {
  t.same(cacheOptionsFromEnv({}), {})
  t.same(cacheOptionsFromEnv({ CACHE_BACKEND: 'memcached' }), { backend: 'memcached' })
})

t.test('a malformed variable throws naming it', async (t) => {
  const bad: Record<string, RegExp> = {
    CACHE_ENABLED: /^CACHE_ENABLED: expected true, false, 1, 0, yes or no, got 'maybe'$/,
    CACHE_BACKEND: /^CACHE_BACKEND: expected 'memory' \| 'redis' \| 'memcached', got 'maybe'$/,
    DEFAULT_CACHE_EXPIRATION: /^DEFAULT_CACHE_EXPIRATION: expected an integer from 1, got 'maybe'$/,
    CACHE_REDIS_PORT: /^CACHE_REDIS_PORT: expected an integer from 1 to 65535/,
    CACHE_MEMCACHED_SERVERS: /^CACHE_MEMCACHED_SERVERS: expected host:port/,
    CACHE_REDIS_CONNECT_TIMEOUT: /^CACHE_REDIS_CONNECT_TIMEOUT: expected a number of seconds/,
  }
  for (const [name, message] of Object.entries(bad)) {
    t.throws(() => cacheOptionsFromEnv({ [name]: 'maybe' }), CacheConfigurationError)
    t.throws(() => cacheOptionsFromEnv({ [name]: 'maybe' }), message)
  }
  t.throws(() => cacheOptionsFromEnv({ CACHE_REDIS_PORT: '70000' }), /CACHE_REDIS_PORT/)
})
