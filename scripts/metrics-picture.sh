#!/usr/bin/env bash
# The picture of the plugin's metrics in docs/: the demo under a minute of mixed load, scraped by
# Prometheus every second, and a headless Chromium screenshot of Prometheus's graph page.
#
#   scripts/metrics-picture.sh [--duration S] [--backend redis|memory] [--no-build]
#
#   --duration S   seconds of load (default $LOAD_DURATION or 60)
#   --backend B    the demo's store: redis (default when redis-server is installed: a private
#                  redis-server on a free loopback port) or memory
#   --no-build     use dist/ as it is (default: npm run build first)
#
# Writes docs/metrics.png (hit ratio per route) and, with Redis, docs/metrics-latency.png (store
# operation latency p50/p99 per backend: the plugin times Redis and Memcached operations only).
# DEMO_SCRIPT=path runs another server script than demo/server.js (same PORT, HOST and
# CACHE_ADMIN_TOKEN environment), e.g. to try this script out. Needs prometheus and chromium (the Debian packages; installed with apt-get
# when missing and running as root. Note: on a systemd machine the prometheus package starts its
# own service on :9090; this script never uses it). Everything it starts listens on 127.0.0.1,
# on free ports, with its files in a temporary directory, and is stopped when it exits, however
# it exits.
#
# The demo's /cache/* routes need the header `x-admin-token`. Prometheus >= 2.55 sends it itself
# (scrape_config http_headers); older ones (Debian 12 has 2.42) scrape through a small loopback
# proxy started here, which adds the header and forwards GET /cache/metrics only.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${LOAD_DURATION:-60}
BUILD=1
BACKEND=
DEMO_SCRIPT=${DEMO_SCRIPT:-demo/server.js}
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --backend) BACKEND=$2; shift 2 ;;
    -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "metrics-picture: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DURATION" in ''|*[!0-9]*) echo "metrics-picture: --duration: expected whole seconds, got '$DURATION'" >&2; exit 2 ;; esac
if [ -z "$BACKEND" ]; then
  if command -v redis-server > /dev/null 2>&1; then BACKEND=redis; else BACKEND=memory; fi
fi
case "$BACKEND" in redis|memory) ;; *) echo "metrics-picture: --backend: expected redis or memory, got '$BACKEND'" >&2; exit 2 ;; esac

log () { printf '[metrics-picture] %s\n' "$*"; }

# ---- tools --------------------------------------------------------------------------------------

need () { # need <command> <debian package>
  command -v "$1" > /dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "metrics-picture: $1 not found; install it (apt-get install $2) or run as root" >&2
    exit 1
  fi
  log "installing $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" > /dev/null ||
    { apt-get update > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" > /dev/null; }
}
need prometheus prometheus
need chromium chromium
need curl curl

PROM_VERSION=$(prometheus --version 2>&1 | sed -n 's/^prometheus, version \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')
PROM_MAJOR=${PROM_VERSION%%.*}
PROM_MINOR=${PROM_VERSION#*.}
if [ "${PROM_MAJOR:-0}" -ge 3 ] || { [ "${PROM_MAJOR:-0}" -eq 2 ] && [ "${PROM_MINOR:-0}" -ge 55 ]; }; then HEADERS=native; else HEADERS=proxy; fi
log "prometheus $PROM_VERSION ($([ $HEADERS = native ] && echo 'sends x-admin-token itself' || echo 'x-admin-token added by a loopback proxy')), $(chromium --version 2> /dev/null)"

# ---- clean-up -----------------------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/metrics-picture.XXXXXX")
PIDS=()
cleanup () {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2> /dev/null || true
  done
  if [ "$status" != 0 ] && [ -d "$TMP" ]; then
    for f in redis.log demo.log proxy.log prometheus.log chromium.log; do
      [ -s "$TMP/$f" ] && { echo "---- $f (last lines)" >&2; tail -n 15 "$TMP/$f" >&2; }
    done
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port () {
  node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close() })"
}

wait_for () { # wait_for <seconds> <what> <command...>: until the command succeeds
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 5))); do
    "$@" > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "metrics-picture: $what not ready after ${seconds} s" >&2
  return 1
}

# ---- the demo -----------------------------------------------------------------------------------

cd "$ROOT"
if [ "$BUILD" = 1 ]; then
  log 'npm run build'
  npm run build > "$TMP/build.log" 2>&1 || { cat "$TMP/build.log" >&2; exit 1; }
fi

DEMO_ENV=()
if [ "$BACKEND" = redis ]; then
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" > "$TMP/redis.log" 2>&1 &
  PIDS+=($!)
  redis_up () { (exec 3<> "/dev/tcp/127.0.0.1/$REDIS_PORT" && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG); }
  wait_for 10 "redis-server on port $REDIS_PORT" redis_up
  DEMO_ENV=(CACHE_BACKEND=redis "CACHE_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0")
  log "redis-server on 127.0.0.1:$REDIS_PORT (pid ${PIDS[-1]})"
fi

TOKEN=$(node -e "console.log(require('node:crypto').randomBytes(16).toString('hex'))")
DEMO_PORT=$(free_port)
DEMO="http://127.0.0.1:$DEMO_PORT"
env "${DEMO_ENV[@]}" HOST=127.0.0.1 PORT="$DEMO_PORT" CACHE_ADMIN_TOKEN="$TOKEN" node "$DEMO_SCRIPT" > "$TMP/demo.log" 2>&1 &
PIDS+=($!)
wait_for 30 "the demo on $DEMO" curl -fsS "$DEMO/countries"

status=$(curl -s -o "$TMP/metrics.txt" -w '%{http_code}' -H "x-admin-token: $TOKEN" "$DEMO/cache/metrics")
if [ "$status" != 200 ]; then
  echo "metrics-picture: GET $DEMO/cache/metrics answered $status: the demo does not serve metrics (plugin option metrics)" >&2
  exit 1
fi
if ! grep -q '^fastify_cache_requests_total\|^# TYPE fastify_cache_requests_total' "$TMP/metrics.txt"; then
  echo "metrics-picture: $DEMO/cache/metrics has no fastify_cache_requests_total; metric names:" >&2
  grep '^# TYPE' "$TMP/metrics.txt" | head -n 20 >&2
  exit 1
fi
log "$DEMO_SCRIPT on $DEMO (pid ${PIDS[-1]}, backend $BACKEND), /cache/metrics answers"

# ---- Prometheus ---------------------------------------------------------------------------------

if [ "$HEADERS" = native ]; then
  TARGET="127.0.0.1:$DEMO_PORT"
  SCRAPE_AUTH=$(printf '    http_headers:\n      x-admin-token:\n        secrets: ["%s"]\n' "$TOKEN")
else
  cat > "$TMP/proxy.mjs" <<'EOF'
// GET /cache/metrics, forwarded to the demo with its admin token; nothing else.
import http from 'node:http'
const target = process.env.TARGET
const token = process.env.TOKEN
const server = http.createServer((req, res) => {
  if (req.method !== 'GET' || !/^\/cache\/metrics(\?|$)/.test(req.url)) {
    res.writeHead(404).end()
    return
  }
  const up = http.get(new URL(req.url, target), { headers: { 'x-admin-token': token, accept: req.headers.accept ?? '*/*' }, timeout: 5000 }, (r) => {
    res.writeHead(r.statusCode, r.headers)
    r.pipe(res)
  })
  up.on('timeout', () => up.destroy(new Error('timeout')))
  up.on('error', (err) => { if (!res.headersSent) res.writeHead(502); res.end(String(err)) })
})
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log(`proxy on ${server.address().port}`))
EOF
  PROXY_PORT=$(free_port)
  TARGET=$DEMO TOKEN=$TOKEN PORT=$PROXY_PORT node "$TMP/proxy.mjs" > "$TMP/proxy.log" 2>&1 &
  PIDS+=($!)
  TARGET="127.0.0.1:$PROXY_PORT"
  SCRAPE_AUTH=''
  wait_for 10 'the header proxy' curl -fsS "http://$TARGET/cache/metrics"
fi

cat > "$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: fastify-server-cache-demo
    metrics_path: /cache/metrics
    static_configs:
      - targets: ['$TARGET']
$SCRAPE_AUTH
EOF
PROM_PORT=$(free_port)
PROM="http://127.0.0.1:$PROM_PORT"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time=1h > "$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
wait_for 30 "prometheus on $PROM" curl -fsS "$PROM/-/ready"
up_query () { curl -fsS "$PROM/api/v1/query" --data-urlencode 'query=up{job="fastify-server-cache-demo"} == 1' | grep -q '"value"'; }
wait_for 20 'a first successful scrape' up_query
log "prometheus on $PROM scraping $TARGET/cache/metrics every second"

# ---- load ---------------------------------------------------------------------------------------

log "demo-load for ${DURATION} s"
node scripts/demo-load.js "$DEMO" --duration "$DURATION" || log 'demo-load saw failed requests (see above); taking the pictures anyway'
sleep 3 # two more scrapes

HIT_RATIO='sum by (route) (rate(fastify_cache_requests_total{outcome="hit"}[30s])) / sum by (route) (rate(fastify_cache_requests_total{outcome=~"hit|miss|stale|bypass"}[30s]))'
# p50 and p99 in one graph: label_replace tells the two apart in the legend.
quantile () { echo "label_replace(histogram_quantile($1, sum by (le, backend) (rate(fastify_cache_store_operation_seconds_bucket[30s]))), \"quantile\", \"$2\", \"\", \"\")"; }
LATENCY="$(quantile 0.5 p50) or $(quantile 0.99 p99)"

result=$(curl -fsS "$PROM/api/v1/query" --data-urlencode "query=$HIT_RATIO")
if ! printf '%s' "$result" | grep -q '"route"'; then
  echo "metrics-picture: the hit-ratio query returned no series: $result" >&2
  exit 1
fi
log "hit ratio per route now: $(printf '%s' "$result" | node -e "
  const r = JSON.parse(require('node:fs').readFileSync(0, 'utf8')).data.result
  console.log(r.map((s) => s.metric.route + ' ' + (Number(s.value[1]) * 100).toFixed(0) + '%').join(', '))")"

# ---- screenshots --------------------------------------------------------------------------------

# Prometheus 3 has /query (tab=graph); 2.x the graph page at /graph (tab 0 = graph).
graph_url () { # graph_url <expr> <range>
  node -e "
    const [major, prom, expr, range] = process.argv.slice(1)
    const u = new URL(Number(major) >= 3 ? '/query' : '/graph', prom)
    u.searchParams.set('g0.expr', expr)
    u.searchParams.set('g0.tab', Number(major) >= 3 ? 'graph' : '0')
    u.searchParams.set('g0.range_input', range)
    u.searchParams.set('g0.stacked', '0')
    console.log(u.href)" "$PROM_MAJOR" "$PROM" "$1" "$2"
}
RANGE="$(( (DURATION + 29) / 60 + 1 ))m"
shoot () { # shoot <expr> <out.png>
  local url; url=$(graph_url "$1" "$RANGE")
  log "screenshot of $url"
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
    --user-data-dir="$TMP/chromium" --window-size=1400,900 --virtual-time-budget=15000 \
    --screenshot="$2" "$url" >> "$TMP/chromium.log" 2>&1
  [ -s "$2" ] || { echo "metrics-picture: chromium wrote no $2" >&2; return 1; }
}
mkdir -p docs
shoot "$HIT_RATIO" "$ROOT/docs/metrics.png"
log 'wrote docs/metrics.png'
if [ "$BACKEND" != memory ]; then
  shoot "$LATENCY" "$ROOT/docs/metrics-latency.png"
  log 'wrote docs/metrics-latency.png'
fi
