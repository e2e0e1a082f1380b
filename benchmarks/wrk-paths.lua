-- The wrk script of benchmarks/load-wrk.js (`--load wrk`): which path each request asks for,
-- and optional response checks. wrk runs one Lua state per thread (plus one for setup/done), so
-- there is no counter shared by all connections as autocannon's is: each thread counts on its
-- own, offset by its thread number and stepping by the number of threads, so that the threads
-- together still cycle over the whole key range (many keys) or never repeat an id (misses).
--
-- Arguments after `--` (wrk passes them to init()):
--   threads  the -t value
--   mode     one (the URL's own path, static request), cycle (prefix .. 0..cycle-1 cycling),
--            unique (prefix .. start + n, never twice)
--   prefix   e.g. /items/ or /slow/
--   number   cycle: the key count; unique: the first id
--   check    '-' for none; 'status' to count responses other than 200; HIT or MISS to count
--            responses whose x-cache header is not that value as well. Checking makes wrk
--            hand every response's headers and body to Lua, which costs the load generator
--            CPU: the runner checks during the warm-up only.

local threads = {}
local counter = 0

function setup(thread)
  thread:set('thread_id', counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests, count, next_index, prefix, start, step, n = nil, 0, 0, nil, 0, 1, 0
local expect_cache = nil
checked, bad_status, bad_cache, last_bad = 0, 0, 0, ''

function init(args)
  local nthreads = tonumber(args[1]) or 1
  local mode = args[2] or 'one'
  local check = args[5] or '-'
  local id = thread_id or 0
  if mode == 'cycle' then
    -- Pre-built requests (wrk's advice for fast servers): this thread's share of the keys,
    -- id, id + threads, id + 2 * threads, ...
    prefix = args[3]
    local cycle = tonumber(args[4])
    requests = {}
    for key = id, cycle - 1, nthreads do
      requests[#requests + 1] = wrk.format(nil, prefix .. key)
    end
    count = #requests
  elseif mode == 'unique' then
    prefix = args[3]
    start = tonumber(args[4]) + id
    step = nthreads
  end
  if mode == 'one' then request = nil end
  if check == '-' then
    response = nil
  elseif check ~= 'status' then
    expect_cache = check
  end
end

function request()
  if requests ~= nil then
    next_index = next_index % count + 1
    return requests[next_index]
  end
  local path = prefix .. string.format('%d', start + n * step)
  n = n + 1
  return wrk.format(nil, path)
end

function response(status, headers, body)
  checked = checked + 1
  if status ~= 200 then
    bad_status = bad_status + 1
    last_bad = 'status ' .. status
  elseif expect_cache ~= nil and headers['x-cache'] ~= expect_cache then
    bad_cache = bad_cache + 1
    last_bad = 'x-cache ' .. tostring(headers['x-cache'])
  end
end

function done(summary, latency, requests)
  local c, s, x, last = 0, 0, 0, ''
  for _, thread in ipairs(threads) do
    c = c + (thread:get('checked') or 0)
    s = s + (thread:get('bad_status') or 0)
    x = x + (thread:get('bad_cache') or 0)
    local l = thread:get('last_bad') or ''
    if l ~= '' then last = l end
  end
  io.write(string.format('BENCH_CHECKS {"checked":%d,"badStatus":%d,"badCache":%d,"lastBad":"%s","requests":%d,"durationUs":%d,"p99Us":%d}\n',
    c, s, x, last, summary.requests, summary.duration, latency:percentile(99.0)))
end
